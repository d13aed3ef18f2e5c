process RUN_BASELINE {
    tag "${meta.id}:${meta.model}:${meta.variant}"
    label 'process_medium'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${meta.id}.${meta.model}.h5ad"), emit: output

    script:
    def args = task.ext.args ?: ''
    """
    ${meta.script} \\
        --input '${h5ad}' \\
        --output '${meta.id}.${meta.model}.h5ad' \\
        --dataset_id '${meta.id}' \\
        --organism '${meta.organism}' \\
        --model_variant '${meta.variant}' \\
        --seed ${params.seed} \\
        ${args}
    """

    stub:
    """
    touch '${meta.id}.${meta.model}.h5ad'
    """
}
