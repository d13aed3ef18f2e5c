/*
 * The benchmark workflow: channel wiring only. Logic lives in bin/ and src/czbenchmarks.
 */
include { VALIDATE                   } from '../modules/local/validate'
include { FETCH_WEIGHTS              } from '../modules/local/fetch_weights'
include { RUN_MODEL                  } from '../modules/local/run_model'
include { RUN_BASELINE               } from '../modules/local/run_baseline'
include { RUN_PERTURBATION_BASELINE  } from '../modules/local/run_perturbation_baseline'
include { IMPORT_EMBEDDINGS          } from '../modules/local/import_embeddings'
include { EVALUATE                   } from '../modules/local/evaluate'
include { REPORT                     } from '../modules/local/report'

// Tasks scoring one embedding (names and parameters as czbenchmarks v0.10; see src/czbenchmarks/tasks).
def embeddingTasks() {
    return ['clustering', 'embedding', 'label_prediction', 'integration']
}

// Which BASELINE variants stand beside the models in each task (the reference's set_baseline).
def baselineVariants(String task) {
    def variants = [clustering: ['pca'], embedding: ['pca'], integration: ['pca'],
                    label_prediction: ['raw_expression'], perturbation: ['control_mean', 'control_median']]
    return variants[task] ?: []
}

/*
 * --tasks "clustering,embedding" | "all" -> list of task names (unknown names are an error).
 */
def requestedTasks(String tasks) {
    def all = ['clustering', 'embedding', 'label_prediction', 'integration', 'cross_species', 'perturbation']
    def asked = (tasks ?: 'all').tokenize(',')*.trim().findAll { it }
    if (asked == ['all']) return all
    def unknown = asked - all
    if (unknown) {
        error "--tasks: unknown task(s) ${unknown.join(', ')}; choose from: all, ${all.join(', ')}"
    }
    return asked
}

/*
 * The tasks that apply to one samplesheet row: its `tasks` column (';'-separated) or, by default,
 * perturbation for rows with a condition_key, every embedding task (integration only with a
 * batch_key) plus cross_species otherwise; always restricted to --tasks.
 */
def datasetTasks(Map row, List requested, String line) {
    def all = ['clustering', 'embedding', 'label_prediction', 'integration', 'cross_species', 'perturbation']
    def tasks
    if (row.tasks) {
        tasks = row.tasks.tokenize(';|')*.trim().findAll { it }
        def unknown = tasks - all
        if (unknown) {
            error "${line}: unknown task(s) ${unknown.join(', ')} in column tasks; choose from: ${all.join(', ')}"
        }
        if (tasks.contains('integration') && !row.batch_key) {
            error "${line}: task integration needs a batch_key"
        }
        if (tasks.contains('perturbation') && !row.condition_key) {
            error "${line}: task perturbation needs a condition_key (and split_key)"
        }
    } else if (row.condition_key) {
        tasks = ['perturbation']
    } else {
        tasks = ['clustering', 'embedding', 'label_prediction'] + (row.batch_key ? ['integration'] : []) + ['cross_species']
    }
    return tasks.findAll { it in requested }
}

/*
 * One dataset's meta map, from a samplesheet row or a catalog entry (same keys).
 */
def datasetMeta(Map row, List requested, String line) {
    return [
        id            : row.id,
        organism      : row.organism,
        label_key     : row.label_key,
        batch_key     : row.batch_key ?: '',
        condition_key : row.condition_key ?: '',
        split_key     : row.condition_key ? (row.split_key ?: 'split') : '',
        perturbation  : row.condition_key ? true : false,
        tasks         : datasetTasks(row, requested, line),
    ]
}

/*
 * Samplesheet -> channel of [meta, h5ad]. One clear error per bad row.
 */
def readSamplesheet(String samplesheet) {
    def sheet = file(samplesheet, checkIfExists: true)
    def required = ['id', 'h5ad', 'organism', 'label_key']
    def requested = requestedTasks(params.tasks as String)
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
            [datasetMeta(row, requested, line), h5ad]
        }
}

/*
 * --datasets "tsv2_bladder,human_spermatogenesis" -> [meta, source URI] rows from the dataset catalog
 * (conf/datasets.yaml), with the same meta a samplesheet row gets.
 */
def catalogDatasets(String names, String catalogPath, String input) {
    def catalog = new org.yaml.snakeyaml.Yaml().load(file(catalogPath, checkIfExists: true).text).datasets
    def requested = requestedTasks(params.tasks as String)
    def sheetIds = input ? file(input).splitCsv(header: true, strip: true)*.id : []
    def asked = names.tokenize(',')*.trim().findAll { it }
    return asked.unique().collect { name ->
        def entry = catalog[name]
        if (entry == null) {
            def hint = catalog.keySet().findAll { it.contains(name) || name.contains(it) }
            error "--datasets: unknown dataset '${name}'${hint ? "; did you mean ${hint.join(', ')}?" : ''} (catalog: ${catalogPath})"
        }
        if (name in sheetIds) {
            error "--datasets: '${name}' is also an id in the --input samplesheet"
        }
        def row = [id: name] + entry.findAll { k, v -> k != 'path' }.collectEntries { k, v -> [k, v as String] }
        def line = "dataset catalog ${file(catalogPath).name}, dataset '${name}'"
        [datasetMeta(row, requested, line), entry.path as String]
    }
}

/*
 * --embeddings sheet (dataset,h5ad,obsm_key,model) -> list of rows, files resolved like --input's.
 */
def readEmbeddingsSheet(String samplesheet, String input) {
    def sheet = file(samplesheet, checkIfExists: true)
    def rows = sheet.splitCsv(header: true, strip: true)
    def known = file(input, checkIfExists: true).splitCsv(header: true, strip: true)*.id
    def seen = [] as Set
    return rows.collect { row ->
        def line = "embeddings sheet ${sheet.name}, row '${row.dataset ?: '?'}' x '${row.model ?: '?'}'"
        def missing = ['dataset', 'h5ad', 'obsm_key', 'model'].findAll { !row[it] }
        if (missing) {
            error "${line}: missing value(s) for ${missing.join(', ')} (columns: dataset,h5ad,obsm_key,model)"
        }
        if (!(row.model ==~ /[A-Za-z0-9_.-]+/) || row.model == 'baseline') {
            error "${line}: model may contain only letters, digits, '_', '-' and '.', and may not be 'baseline'"
        }
        if (!(row.dataset in known)) {
            error "${line}: dataset '${row.dataset}' is not in the --input samplesheet (datasets: ${known.join(', ')})"
        }
        if (!seen.add([row.dataset, row.model])) {
            error "${line}: the same dataset x model appears twice"
        }
        def remote = row.h5ad.contains('://')
        def h5ad = (remote || row.h5ad.startsWith('/')) ? file(row.h5ad) : sheet.parent.resolve(row.h5ad)
        if (!remote && !h5ad.exists()) {
            error "${line}: h5ad file not found: ${row.h5ad}"
        }
        [dataset: row.dataset, model: row.model, obsm_key: row.obsm_key, h5ad: h5ad]
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
    def byo = params.embeddings ? readEmbeddingsSheet(params.embeddings as String, params.input as String) : []
    // Bring-your-own embeddings replace inference: only the baselines run beside them.
    def models = byo ? [] : requestedModels(params.models, params.registry)
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
                                container: m.entry.container ?: '', needs_weights: m.entry.needs_weights != false,
                                output: m.entry.output ?: 'embedding']
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

    // Baselines: PCA on HVGs for single-cell datasets, control mean/median for perturbation datasets.
    ch_baseline = ch_checked.baseline.branch { meta, h5ad ->
        perturbation: meta.perturbation
        single_cell: true
    }
    RUN_BASELINE(ch_baseline.single_cell.filter { meta, h5ad -> meta.tasks.any { it in ['clustering', 'embedding', 'integration'] } })
    RUN_PERTURBATION_BASELINE(
        ch_baseline.perturbation
            .filter { meta, h5ad -> 'perturbation' in meta.tasks }
            .combine(Channel.fromList(baselineVariants('perturbation')))
            .map { meta, h5ad, kind -> [meta + [variant: kind], h5ad] }
    )

    // Bring your own embeddings: checked against their dataset, then scored like a model's output.
    ch_byo = ch_datasets
        .map { meta, h5ad -> [meta.id, meta, h5ad] }
        .combine(Channel.fromList(byo.collect { [it.dataset, it] }), by: 0)
        .map { id, meta, h5ad, row ->
            [meta + [model: row.model, model_type: 'EXTERNAL', variant: '', obsm_key: row.obsm_key], row.h5ad, h5ad]
        }
    IMPORT_EMBEDDINGS(ch_byo)

    // Model/baseline outputs with their kind, joined back to their dataset file.
    ch_dataset_files = ch_datasets.map { meta, h5ad -> [meta.id, h5ad] }
    // Perturbation models (registry `output: prediction`) write predictions, the others embeddings.
    ch_model_outputs = RUN_MODEL.out.output.branch { meta, out ->
        prediction: meta.output == 'prediction'
        embedding: true
    }
    ch_embeddings = ch_model_outputs.embedding
        .mix(RUN_BASELINE.out.output, IMPORT_EMBEDDINGS.out.output)
        .map { meta, out -> [meta + [input_kind: 'embedding'], out] }
    ch_predictions = RUN_PERTURBATION_BASELINE.out.output
        .mix(ch_model_outputs.prediction)
        .map { meta, out -> [meta + [input_kind: 'prediction'], out] }

    // One EVALUATE per output x task that applies to it.
    ch_single = ch_embeddings.mix(ch_predictions)
        .flatMap { meta, out ->
            def baseline = meta.model == 'baseline'
            meta.tasks.findAll { task ->
                if (task == 'cross_species') return false
                if (meta.input_kind == 'prediction') return task == 'perturbation'
                if (!(task in embeddingTasks())) return false
                return !baseline || (meta.variant in baselineVariants(task))
            }.collect { task -> [meta.id, meta + [task: task], out] }
        }
        .combine(ch_dataset_files, by: 0)
        .map { id, meta, out, h5ad -> [meta + [ids: [meta.id], organisms: [meta.organism]], [out], [h5ad]] }

    // The reference's label-prediction baseline: the dataset's raw expression, scored directly.
    ch_raw = params.baselines
        ? ch_checked.baseline
            .filter { meta, h5ad -> !meta.perturbation && 'label_prediction' in meta.tasks }
            .map { meta, h5ad ->
                [meta + [variant: 'raw_expression', input_kind: 'expression', task: 'label_prediction',
                         ids: [meta.id], organisms: [meta.organism]], [h5ad], []]
            }
        : Channel.empty()

    // Cross-species: one model's embeddings of datasets of different organisms, joined (groupTuple by model).
    ch_cross = ch_embeddings
        .filter { meta, out -> meta.model != 'baseline' && 'cross_species' in meta.tasks }
        .map { meta, out -> [meta.model, meta, out] }
        .groupTuple()
        .filter { model, metas, outs -> metas*.organism.unique().size() > 1 }
        .map { model, metas, outs ->
            def order = (0..<metas.size()).toList().sort(false) { metas[it].id }
            def first = metas[order[0]]
            def meta = [id: order.collect { metas[it].id }.join('+'), ids: order.collect { metas[it].id },
                        organisms: order.collect { metas[it].organism }, model: model, model_type: first.model_type,
                        variant: order.collect { metas[it].variant }.unique().join('+'), label_key: first.label_key,
                        batch_key: '', condition_key: '', split_key: '', task: 'cross_species', input_kind: 'embedding']
            [meta, order.collect { outs[it] }, []]
        }

    EVALUATE(ch_single.mix(ch_raw, ch_cross))

    // What the run was asked for: REPORT compares it with what came back (completeness check).
    // Only values that stay the same on -resume, so that a resumed run caches REPORT too.
    def run_info = [kind: 'run', models: byo ? '' : params.models, tasks: params.tasks, seed: params.seed,
                    baselines: params.baselines, embeddings: params.embeddings ?: '', input: params.input,
                    session: workflow.sessionId.toString(), nextflow: nextflow.version.toString(),
                    revision: workflow.revision ?: '', commit: workflow.commitId ?: '', profile: workflow.profile,
                    container_engine: workflow.containerEngine ?: '']
    def plan_models = models.collect { m ->
        [kind: 'model', model: m.model, model_type: m.entry.model_type, variant: m.variant,
         source: m.model == 'baseline' ? 'baseline' : 'inference', output: m.entry.output ?: 'embedding']
    } + byo.collect { it.model }.unique().collect { name ->
        [kind: 'model', model: name, model_type: 'EXTERNAL', variant: '', source: 'external', output: 'embedding',
         datasets: byo.findAll { it.model == name }*.dataset]
    }
    def static_plan = ([run_info] + plan_models).collect { groovy.json.JsonOutput.toJson(it) }
    ch_plan = ch_datasets
        .map { meta, h5ad -> groovy.json.JsonOutput.toJson([kind: 'dataset'] + meta) }
        .collect()
        .map { lines -> (static_plan + lines.sort()).join('\n') }

    REPORT(
        EVALUATE.out.metrics.map { meta, json -> json }.collect().ifEmpty([]),
        VALIDATE.out.verdict.map { meta, h5ad, json -> json }.collect().ifEmpty([]),
        ch_plan,
        ch_embeddings.map { meta, out -> out }.collect().ifEmpty([]),
    )

    emit:
    results = REPORT.out.json
}
