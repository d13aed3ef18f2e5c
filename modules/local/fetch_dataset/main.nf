process FETCH_DATASET {
    tag "${dataset.id}"
    label 'process_single'
    // Cached across runs like the weights (storeDir in conf/modules.config): atomic download,
    // sha256 manifest beside the file.

    input:
    tuple val(dataset), val(source)

    output:
    // The folder (h5ad + czb_manifest.json): storeDir keeps only declared outputs.
    tuple val(dataset), path("${dataset.id}"), emit: folder

    script:
    """
    czb_fetch_dataset.py --dataset '${dataset.id}' --source '${source}' --dest '${dataset.id}'
    """

    stub:
    """
    mkdir -p '${dataset.id}'
    touch '${dataset.id}/${dataset.id}.h5ad'
    """
}
