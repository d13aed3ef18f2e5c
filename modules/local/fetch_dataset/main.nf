process FETCH_DATASET {
    tag "${meta.id}"
    label 'process_single'
    // Cached across runs like the weights: atomic download, sha256 manifest beside the file.
    storeDir "${params.datasets_cache}"

    input:
    tuple val(meta), val(source)

    output:
    // The folder (h5ad + czb_manifest.json): storeDir keeps only declared outputs.
    tuple val(meta), path("${meta.id}"), emit: folder

    script:
    """
    czb_fetch_dataset.py --dataset '${meta.id}' --source '${source}' --dest '${meta.id}'
    """

    stub:
    """
    mkdir -p '${meta.id}'
    touch '${meta.id}/${meta.id}.h5ad'
    """
}
