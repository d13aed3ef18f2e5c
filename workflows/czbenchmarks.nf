/*
 * The benchmark workflow: channel wiring only. Logic lives in bin/ and src/czbenchmarks.
 */
include { VALIDATE      } from '../modules/local/validate'
include { FETCH_WEIGHTS } from '../modules/local/fetch_weights'
include { RUN_MODEL     } from '../modules/local/run_model'
include { RUN_BASELINE  } from '../modules/local/run_baseline'
include { EVALUATE      } from '../modules/local/evaluate'
include { REPORT        } from '../modules/local/report'

/*
 * Samplesheet -> channel of [meta, h5ad]. One clear error per bad row.
 */
def readSamplesheet(String samplesheet) {
    def sheet = file(samplesheet, checkIfExists: true)
    def required = ['id', 'h5ad', 'organism', 'label_key']
    def seen = [] as Set
    return Channel.fromPath(sheet)
        .splitCsv(header: true, strip: true)
        .map { row ->
            def line = "samplesheet ${sheet.name}, dataset '${row.id ?: '?'}'"
            def missing = required.findAll { !row[it] }
            if (missing) {
                error "${line}: missing value(s) for ${missing.join(', ')}"
            }
            if (!(row.id ==~ /[A-Za-z0-9_.-]+/)) {
                error "${line}: id may contain only letters, digits, '_', '-' and '.'"
            }
            if (!seen.add(row.id)) {
                error "${line}: id is used by more than one row"
            }
            // Relative paths are resolved against the samplesheet's own folder.
            def remote = row.h5ad.contains('://')
            def h5ad = (remote || row.h5ad.startsWith('/')) ? file(row.h5ad) : sheet.parent.resolve(row.h5ad)
            if (!remote && !h5ad.exists()) {
                error "${line}: h5ad file not found: ${row.h5ad}"
            }
            def meta = [
                id        : row.id,
                organism  : row.organism,
                label_key : row.label_key,
                batch_key : row.batch_key ?: '',
            ]
            [meta, h5ad]
        }
}

/*
 * --models "scvi,geneformer:gf-6L-30M-i2048" -> list of registry entries with the variant asked for.
 */
def requestedModels(String models, String registryPath) {
    def registry = new org.yaml.snakeyaml.Yaml().load(file(registryPath, checkIfExists: true).text).models
    def requested = (models ?: '').tokenize(',')*.trim().findAll { it }
    if (!requested) {
        error "--models is empty; choose from: ${registry.keySet().findAll { it != 'baseline' }.join(', ')}"
    }
    return requested.collect { item ->
        def (name, variant) = item.contains(':') ? item.split(':', 2) as List : [item, null]
        def entry = registry[name]
        if (entry == null) {
            error "--models: unknown model '${name}'; known models: ${registry.keySet().join(', ')}"
        }
        [model: name, variant: variant ?: (entry.default_variant ?: ''), entry: entry]
    }
}

workflow CZBENCHMARKS {
    take:
    ch_datasets // [meta, h5ad]

    main:
    def models = requestedModels(params.models, params.registry)
    if (params.baselines) {
        models << requestedModels('baseline', params.registry)[0]
    }
    def ch_models = Channel.fromList(models.collect { m ->
        [m, file("${projectDir}/bin/${m.entry.script}", checkIfExists: true), file("${projectDir}/${m.entry.config}", checkIfExists: true)]
    })

    // Every dataset x model pair gets a verdict before anything expensive runs.
    ch_pairs = ch_datasets
        .combine(ch_models)
        .map { dmeta, h5ad, m, script, config ->
            def meta = dmeta + [model: m.model, model_type: m.entry.model_type, model_class: m.entry.model_class,
                                script: m.entry.script, requested_variant: m.variant,
                                container: m.entry.container ?: '', needs_weights: m.entry.needs_weights != false]
            [meta, h5ad, script, config]
        }
    VALIDATE(ch_pairs)

    ch_checked = VALIDATE.out.verdict.map { meta, h5ad, json ->
        def verdict = new groovy.json.JsonSlurper().parse(json.toFile())
        if (params.fail_on_incompatible && verdict.verdict != 'pass') {
            error "Dataset '${meta.id}' x model '${meta.model}': ${verdict.verdict}: ${verdict.reasons.join('; ')}"
        }
        def m = meta + [variant: verdict.variant ?: '', weights_key: verdict.weights_key ?: '',
                        weights_sources: verdict.weights_sources ?: [], verdict: verdict.verdict]
        [m, h5ad]
    }
    .branch { meta, h5ad ->
        baseline: meta.verdict == 'pass' && !meta.needs_weights
        model: meta.verdict == 'pass'
        skipped: true
    }

    // Weights: once per model x variant (x source), cached across runs by storeDir.
    ch_weight_requests = ch_checked.model
        .map { meta, h5ad -> [model: meta.model, variant: meta.variant, weights_key: meta.weights_key, sources: meta.weights_sources] }
        .unique()
    FETCH_WEIGHTS(ch_weight_requests)

    ch_model_inputs = ch_checked.model
        .map { meta, h5ad -> [[meta.model, meta.weights_key], meta, h5ad] }
        .combine(FETCH_WEIGHTS.out.weights.map { wmeta, dir -> [[wmeta.model, wmeta.weights_key], dir] }, by: 0)
        .map { key, meta, h5ad, weights -> [meta, h5ad, weights] }
    RUN_MODEL(ch_model_inputs)

    RUN_BASELINE(ch_checked.baseline)

    // Every output x task.
    def tasks = params.tasks.tokenize(',')*.trim().findAll { it }
    ch_outputs = RUN_MODEL.out.output.mix(RUN_BASELINE.out.output)
    EVALUATE(ch_outputs.combine(Channel.fromList(tasks)).map { meta, out, task -> [meta + [task: task], out] })

    REPORT(
        EVALUATE.out.metrics.map { meta, json -> json }.collect().ifEmpty([]),
        VALIDATE.out.verdict.map { meta, h5ad, json -> json }.collect(),
    )

    emit:
    results = REPORT.out.json
}
