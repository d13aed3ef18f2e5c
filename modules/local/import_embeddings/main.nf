process IMPORT_EMBEDDINGS {
    tag "${meta.id}:${meta.model}"
    label 'process_single'

    input:
    tuple val(meta), path(embedding, stageAs: 'user/*'), path(h5ad)

    output:
    tuple val(meta), path("${meta.id}.${meta.model}.h5ad"), emit: output

    script:
    def args = task.ext.args ?: ''
    """
    czb_import_embeddings.py \\
        --embedding '${embedding}' \\
        --dataset '${h5ad}' \\
        --dataset_id '${meta.id}' \\
        --obsm_key '${meta.obsm_key}' \\
        --model '${meta.model}' \\
        --organism '${meta.organism}' \\
        --seed ${params.seed} \\
        --output '${meta.id}.${meta.model}.h5ad' \\
        ${args}
    """

    stub:
    """
    touch '${meta.id}.${meta.model}.h5ad'
    """
}
