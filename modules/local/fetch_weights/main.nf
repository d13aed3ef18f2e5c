process FETCH_WEIGHTS {
    tag "${request.model}/${request.variant}"
    label 'process_single'
    // storeDir (conf/modules.config) caches a variant's weights across runs. The folder name carries
    // a digest of the sources, so changing where weights come from fetches them anew. The script
    // builds the folder under a temporary name and renames it only once verified, so a failed fetch
    // stores nothing. The sha256 of every file is computed here, once, into the manifest (with size
    // and mtime); inference checks size and mtime against it and re-hashes only files that changed.

    input:
    val(request)

    output:
    tuple val(request), path("${request.weights_key}"), emit: weights

    script:
    def sources = groovy.json.JsonOutput.toJson(request.sources)
    """
    czb_fetch_weights.py \\
        --model '${request.model}' \\
        --variant '${request.variant}' \\
        --sources '${sources}' \\
        --dest '${request.weights_key}'
    """

    stub:
    """
    mkdir -p '${request.weights_key}'
    echo '{"schema": 2, "source": "stub", "files": []}' > '${request.weights_key}/czb_manifest.json'
    """
}
