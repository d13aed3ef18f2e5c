process FETCH_WEIGHTS {
    tag "${request.model}/${request.variant}"
    label 'process_single'
    // Cached across runs: a variant's weights are fetched once per weights_cache.
    storeDir "${params.weights_cache}/${request.model}"

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
    echo '{"schema": 1, "source": "stub", "files": []}' > '${request.weights_key}/czb_manifest.json'
    """
}
