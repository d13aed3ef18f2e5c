process RUN_MODEL {
    tag "${meta.id}:${meta.model}:${meta.variant}"
    label 'process_gpu'
    container "${params.container_registry}/${meta.container}"

    input:
    tuple val(meta), path(h5ad), path(weights)

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
        --weights_dir '${weights}' \\
        --model_variant '${meta.variant}' \\
        --seed ${params.seed} \\
        --device ${params.device} \\
        ${args}
    """

    stub:
    """
    touch '${meta.id}.${meta.model}.h5ad'
    """
}
