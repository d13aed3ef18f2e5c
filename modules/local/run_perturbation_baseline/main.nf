process RUN_PERTURBATION_BASELINE {
    tag "${meta.id}:${meta.model}:${meta.variant}"
    label 'process_single'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${meta.id}.${meta.model}.${meta.variant}.h5ad"), emit: output

    script:
    def args = task.ext.args ?: ''
    """
    czb_perturbation_baseline.py \\
        --input '${h5ad}' \\
        --output '${meta.id}.${meta.model}.${meta.variant}.h5ad' \\
        --baseline_type '${meta.variant}' \\
        --dataset_id '${meta.id}' \\
        --condition_key '${meta.condition_key}' \\
        --split_key '${meta.split_key}' \\
        --seed ${params.seed} \\
        ${args}
    """

    stub:
    """
    touch '${meta.id}.${meta.model}.${meta.variant}.h5ad'
    """
}
