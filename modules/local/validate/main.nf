process VALIDATE {
    tag "${dataset.id}:${model.name}${model.role == 'baseline' ? ':' + model.variant : ''}"
    label 'process_single'

    input:
    tuple val(dataset), val(model), path(h5ad), path(model_script), path(model_config), path(task_catalogue)

    output:
    tuple val(dataset), val(model), path(h5ad), path("${prefix}.verdict.json"), path("${prefix}.weights.json"), emit: verdict

    script:
    prefix = "${dataset.id}.${model.entry}"
    def args = task.ext.args ?: ''
    // Batch-role constants may hold a quote (assay "10x 3' v3"): escaped for the single-quoted argument.
    def batch_roles = (dataset.scvi_batch_columns ?: '').replace("'", "'\\''")
    """
    export CZB_MODEL_TYPE='${model.model_type}'
    czb_validate.py \\
        --dataset_id '${dataset.id}' \\
        --h5ad '${h5ad}' \\
        --organism '${dataset.organism}' \\
        --label_key '${dataset.label_key}' \\
        --batch_key '${dataset.batch_key}' \\
        --condition_key '${dataset.condition_key ?: 'condition'}' \\
        --split_key '${dataset.split_key ?: 'split'}' \\
        --tasks '${dataset.tasks.join(',')}' \\
        --task_catalogue '${task_catalogue}' \\
        --model '${model.name}' \\
        --model_script '${model_script}' \\
        --model_class '${model.model_class}' \\
        --model_config '${model_config}' \\
        --variant '${model.variant}' \\
        --needs_weights '${model.needs_weights}' \\
        --counts_layer '${dataset.counts_layer ?: ''}' \\
        --scvi_batch_columns '${batch_roles}' \\
        --output '${prefix}.verdict.json' \\
        --weights_request '${prefix}.weights.json' \\
        ${args}
    """

    stub:
    prefix = "${dataset.id}.${model.entry}"
    def variant = model.variant ?: 'stub'
    """
    cat > '${prefix}.verdict.json' <<'JSON'
    {"dataset": "${dataset.id}", "model": "${model.name}", "verdict": "pass", "reasons": [],
     "variant": "${variant}", "not_applicable": {}, "vocabulary_check": false, "checks": {}}
    JSON
    cat > '${prefix}.weights.json' <<'JSON'
    {"model": "${model.name}", "variant": "${variant}", "weights_key": "${variant}-stub", "sources": [["stub://${model.name}", ""]]}
    JSON
    """
}
