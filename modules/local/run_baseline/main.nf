process RUN_BASELINE {
    tag "${dataset.id}:${model.name}:${model.variant}"
    label 'process_medium'

    input:
    tuple val(dataset), val(model), path(h5ad), path(model_script)

    output:
    tuple val(dataset), val(model), path("${prefix}.h5ad"), emit: output

    script:
    prefix = "${dataset.id}.${model.name}.${model.variant}"
    def args = task.ext.args ?: ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    python3 '${model_script}' \\
        --input '${h5ad}' \\
        --output '${prefix}.h5ad' \\
        --dataset_id '${dataset.id}' \\
        --organism '${dataset.organism}' \\
        --model_variant '${model.variant}' \\
        --condition_key '${dataset.condition_key ?: 'condition'}' \\
        --split_key '${dataset.split_key ?: 'split'}' \\
        ${args}
    """

    stub:
    prefix = "${dataset.id}.${model.name}.${model.variant}"
    """
    touch '${prefix}.h5ad'
    """
}
