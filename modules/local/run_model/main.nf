process RUN_MODEL {
    tag "${meta.id}:${meta.model}:${meta.variant}"
    label 'process_gpu'
    // Each model's pinned image from conf/models.yaml (`nextflow inspect` has no task inputs: placeholder).
    container "${params.container_registry}/${meta?.container ?: 'per-model-image:see-conf-models.yaml'}"

    input:
    tuple val(meta), path(h5ad), path(weights)

    output:
    tuple val(meta), path("${meta.id}.${meta.model}.h5ad"), emit: output

    script:
    def args = task.ext.args ?: ''
    """
    # One math-library thread per CPU the task was given (torch defaults to every core of the host).
    export OMP_NUM_THREADS=${task.cpus} MKL_NUM_THREADS=${task.cpus}
    ${meta.script} \\
        --input '${h5ad}' \\
        --output '${meta.id}.${meta.model}.h5ad' \\
        --dataset_id '${meta.id}' \\
        --organism '${meta.organism}' \\
        --weights_dir '${weights}' \\
        --model_variant '${meta.variant}' \\
        --seed ${params.seed} \\
        --device ${params.device} \\
        --condition_key '${meta.condition_key ?: 'condition'}' \\
        --split_key '${meta.split_key ?: 'split'}' \\
        ${args}
    """

    stub:
    """
    touch '${meta.id}.${meta.model}.h5ad'
    """
}
