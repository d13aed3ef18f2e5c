process RUN_MODEL {
    tag "${dataset.id}:${model.name}:${model.variant}"
    label 'process_gpu'
    // Each model runs in its own pinned image (conf/modules.config reads it from the registry entry).

    input:
    tuple val(dataset), val(model), path(h5ad), path(weights), path(model_script)

    output:
    tuple val(dataset), val(model), path("${prefix}.h5ad"), emit: output

    script:
    prefix = "${dataset.id}.${model.name}"
    def args = task.ext.args ?: ''
    """
    # One math-library thread per CPU the task was given (torch defaults to every core of the host).
    export OMP_NUM_THREADS=${task.cpus} MKL_NUM_THREADS=${task.cpus}
    export CZB_MODEL_TYPE='${model.model_type}'
    python3 '${model_script}' \\
        --input '${h5ad}' \\
        --output '${prefix}.h5ad' \\
        --dataset_id '${dataset.id}' \\
        --organism '${dataset.organism}' \\
        --weights_dir '${weights}' \\
        --model_variant '${model.variant}' \\
        --condition_key '${dataset.condition_key ?: 'condition'}' \\
        --split_key '${dataset.split_key ?: 'split'}' \\
        ${args}
    """

    stub:
    prefix = "${dataset.id}.${model.name}"
    """
    touch '${prefix}.h5ad'
    """
}
