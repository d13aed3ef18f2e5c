process CHECK_VOCABULARY {
    tag "${dataset.id}:${model.name}:${model.variant}"
    label 'process_single'

    input:
    // The fetched weights folder: the verdict is a function of the dataset and this folder only,
    // so a cold and a warm weights cache give the same answer.
    tuple val(dataset), val(model), path(h5ad), path(weights), path(model_script), path(model_config)

    output:
    tuple val(dataset), val(model), path(h5ad), path(weights), path("${prefix}.vocabulary.json"), emit: verdict

    script:
    prefix = "${dataset.id}.${model.entry}"
    def args = task.ext.args ?: ''
    """
    export CZB_MODEL_TYPE='${model.model_type}'
    czb_check_vocabulary.py \\
        --dataset_id '${dataset.id}' \\
        --h5ad '${h5ad}' \\
        --organism '${dataset.organism}' \\
        --model '${model.name}' \\
        --model_script '${model_script}' \\
        --model_class '${model.model_class}' \\
        --model_config '${model_config}' \\
        --variant '${model.variant}' \\
        --weights_dir '${weights}' \\
        --condition_key '${dataset.condition_key ?: 'condition'}' \\
        --split_key '${dataset.split_key ?: 'split'}' \\
        --output '${prefix}.vocabulary.json' \\
        ${args}
    """

    stub:
    prefix = "${dataset.id}.${model.entry}"
    """
    echo '{"dataset": "${dataset.id}", "model": "${model.name}", "verdict": "pass", "reasons": [], "stage": "vocabulary"}' > '${prefix}.vocabulary.json'
    """
}
