process IMPORT_EMBEDDINGS {
    tag "${dataset.id}:${model.name}"
    label 'process_single'

    input:
    tuple val(dataset), val(model), val(obsm_key), path(embedding, stageAs: 'user/*'), path(h5ad)

    output:
    tuple val(dataset), val(model), path("${prefix}.h5ad"), emit: output

    script:
    prefix = "${dataset.id}.${model.name}"
    def args = task.ext.args ?: ''
    """
    czb_import_embeddings.py \\
        --embedding '${embedding}' \\
        --dataset '${h5ad}' \\
        --dataset_id '${dataset.id}' \\
        --obsm_key '${obsm_key}' \\
        --model '${model.name}' \\
        --organism '${dataset.organism}' \\
        --output '${prefix}.h5ad' \\
        ${args}
    """

    stub:
    prefix = "${dataset.id}.${model.name}"
    """
    touch '${prefix}.h5ad'
    """
}
