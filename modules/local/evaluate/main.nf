process EVALUATE {
    tag "${meta.id}:${meta.model}:${meta.task}"
    label 'process_low'

    input:
    tuple val(meta), path(output_h5ad)

    output:
    tuple val(meta), path("${meta.id}.${meta.model}.${meta.task}.metrics.json"), emit: metrics

    script:
    def args = task.ext.args ?: ''
    """
    czb_evaluate.py \\
        --output_h5ad '${output_h5ad}' \\
        --task '${meta.task}' \\
        --dataset_id '${meta.id}' \\
        --model '${meta.model}' \\
        --label_key '${meta.label_key}' \\
        --seed ${params.seed} \\
        --output '${meta.id}.${meta.model}.${meta.task}.metrics.json' \\
        ${args}
    """

    stub:
    """
    cat > '${meta.id}.${meta.model}.${meta.task}.metrics.json' <<'JSON'
    {"dataset": "${meta.id}", "model": "${meta.model}", "model_type": "${meta.model_type}", "variant": "${meta.variant}",
     "task": "${meta.task}", "seed": ${params.seed}, "params": {}, "metrics": [{"metric_type": "stub", "value": 0.0, "params": {}}]}
    JSON
    """
}
