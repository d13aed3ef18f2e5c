process VALIDATE {
    tag "${meta.id}:${meta.model}"
    label 'process_single'

    input:
    tuple val(meta), path(h5ad), path(model_script), path(model_config)

    output:
    tuple val(meta), path(h5ad), path("${meta.id}.${meta.model}.verdict.json"), emit: verdict

    script:
    def args = task.ext.args ?: ''
    """
    czb_validate.py \\
        --dataset_id '${meta.id}' \\
        --h5ad '${h5ad}' \\
        --organism '${meta.organism}' \\
        --label_key '${meta.label_key}' \\
        --batch_key '${meta.batch_key}' \\
        --model '${meta.model}' \\
        --model_script '${model_script}' \\
        --model_class '${meta.model_class}' \\
        --model_config '${model_config}' \\
        --variant '${meta.requested_variant ?: ''}' \\
        --needs_weights '${meta.needs_weights}' \\
        --weights_mirror '${params.weights_mirror ?: ''}' \\
        --weights_cache '${params.weights_cache ?: ''}' \\
        --condition_key '${meta.condition_key ?: 'condition'}' \\
        --split_key '${meta.split_key ?: 'split'}' \\
        --max_cells ${params.validation_max_cells} \\
        --output '${meta.id}.${meta.model}.verdict.json' \\
        ${args}
    """

    stub:
    def variant = meta.requested_variant ?: 'stub'
    """
    cat > '${meta.id}.${meta.model}.verdict.json' <<'JSON'
    {"dataset": "${meta.id}", "model": "${meta.model}", "verdict": "pass", "reasons": [],
     "variant": "${variant}", "weights_key": "${variant}-stub", "weights_sources": [["stub://${meta.model}", ""]], "checks": {}}
    JSON
    """
}
