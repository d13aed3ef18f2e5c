/*
 * Initialisation: params and samplesheets checked against their schemas, the samplesheet, the
 * dataset catalogue, the model registry and the embeddings sheet each read once, catalogue datasets
 * fetched. Emits the datasets, the models (models, baselines, bring-your-own) and the run's header.
 */
include { FETCH_DATASET } from '../../../modules/local/fetch_dataset'

// A path of a sheet row: remote as is, absolute as is, otherwise relative to the sheet's folder.
def rowFile(String value, sheet) {
    boolean remote = value.contains('://')
    return (remote || value.startsWith('/')) ? file(value) : sheet.parent.resolve(value)
}

// --help: the parameters from nextflow_schema.json, then stop.
def printHelpAndExit() {
    log.info(SchemaValidator.helpText(file("${projectDir}/nextflow_schema.json"), workflow.manifest.name as String))
    System.exit(0)
}

workflow INITIALISE {
    main:
    if (params.help) printHelpAndExit()
    def errors = SchemaValidator.paramErrors(params, file("${projectDir}/nextflow_schema.json"))
    def sheet = params.input ? file(params.input) : null
    def rows = []
    if (!errors && sheet != null) {
        if (!sheet.exists()) {
            errors << "--input: samplesheet not found: ${params.input}"
        } else {
            rows = sheet.splitCsv(header: true, strip: true)
            errors += SchemaValidator.rowErrors(rows, file("${projectDir}/assets/schema_input.json"), sheet.name)
        }
    }
    if (!errors && !params.input && !params.datasets) {
        errors << "give --input (a samplesheet) and/or --datasets (names from ${params.dataset_catalog})"
    }
    if (errors) {
        error("Invalid parameters or samplesheet:\n  - " + errors.join("\n  - "))
    }

    def catalogue = BenchmarkPlan.loadTasks(file(params.task_catalogue, checkIfExists: true))
    def registry = BenchmarkPlan.loadRegistry(file(params.registry, checkIfExists: true))
    def requested = BenchmarkPlan.requestedTasks(params.tasks as String, catalogue)

    // Samplesheet rows -> [dataset meta, h5ad]; one clear error per bad row.
    def seen = [] as Set
    def sheet_datasets = rows.collect { row ->
        def where = "samplesheet ${sheet.name}, dataset '${row.id ?: '?'}'"
        if (!seen.add(row.id)) error("${where}: id is used by more than one row")
        def h5ad = rowFile(row.h5ad as String, sheet)
        if (!(row.h5ad as String).contains('://') && !h5ad.exists()) error("${where}: h5ad file not found: ${row.h5ad}")
        [BenchmarkPlan.datasetMeta(row, requested, catalogue, where), h5ad]
    }

    // --datasets names -> [dataset meta, source URI] from the dataset catalogue (conf/datasets.yaml).
    def catalog_path = file(params.dataset_catalog, checkIfExists: true)
    def known = params.datasets ? (new org.yaml.snakeyaml.Yaml().load(catalog_path.text).datasets as Map) : [:]
    def catalog_datasets = (params.datasets ?: '').tokenize(',')*.trim().findAll { name -> name }.unique().collect { name ->
        def entry = known[name]
        if (entry == null) {
            def hint = known.keySet().findAll { k -> k.contains(name) || name.contains(k) }
            error("--datasets: unknown dataset '${name}'${hint ? "; did you mean ${hint.join(', ')}?" : ''} (catalog: ${params.dataset_catalog})")
        }
        if (name in seen) error("--datasets: '${name}' is also an id in the --input samplesheet")
        def row = [id: name] + entry.findAll { k, v -> k != 'path' }.collectEntries { k, v -> [k, v as String] }
        [BenchmarkPlan.datasetMeta(row, requested, catalogue, "dataset catalog ${catalog_path.name}, dataset '${name}'"), entry.path as String]
    }

    // --embeddings sheet (dataset,h5ad,obsm_key,model): scored like a model's output, no inference.
    def byo = []
    if (params.embeddings) {
        def esheet = file(params.embeddings, checkIfExists: true)
        def ids = sheet_datasets.collect { d -> d[0].id } + catalog_datasets.collect { d -> d[0].id }
        def pairs = [] as Set
        byo = esheet.splitCsv(header: true, strip: true).collect { row ->
            def where = "embeddings sheet ${esheet.name}, row '${row.dataset ?: '?'}' x '${row.model ?: '?'}'"
            def missing = ['dataset', 'h5ad', 'obsm_key', 'model'].findAll { column -> !row[column] }
            if (missing) error("${where}: missing value(s) for ${missing.join(', ')} (columns: dataset,h5ad,obsm_key,model)")
            if (!(row.model ==~ /[A-Za-z0-9_.-]+/) || row.model == 'baseline') {
                error("${where}: model may contain only letters, digits, '_', '-' and '.', and may not be 'baseline'")
            }
            if (!(row.dataset in ids)) error("${where}: dataset '${row.dataset}' is not in the --input samplesheet (datasets: ${ids.join(', ')})")
            if (!pairs.add([row.dataset, row.model])) error("${where}: the same dataset x model appears twice")
            def h5ad = rowFile(row.h5ad as String, esheet)
            if (!(row.h5ad as String).contains('://') && !h5ad.exists()) error("${where}: h5ad file not found: ${row.h5ad}")
            [dataset: row.dataset, model: row.model, obsm_key: row.obsm_key, h5ad: h5ad]
        }
    }

    // Models: bring-your-own embeddings replace inference; baselines stand beside either.
    def prefix = params.container_registry as String
    def model_options = [precision: params.precision, model_args: BenchmarkPlan.modelArgs(params.model_args as String, registry)]
    def model_list = byo ? BenchmarkPlan.externalModels(byo) : BenchmarkPlan.requestedModels(params.models as String, registry, prefix, model_options)
    if (params.baselines) model_list += BenchmarkPlan.baselines(registry, prefix)

    FETCH_DATASET(channel.fromList(catalog_datasets))
    ch_catalog = FETCH_DATASET.out.folder.map { meta, folder -> [meta, folder.listFiles().find { f -> f.name.endsWith('.h5ad') }] }

    // The run's header for REPORT: only values that stay the same on -resume, so REPORT can cache.
    def run_info = [models: byo ? '' : params.models, tasks: params.tasks, seed: params.seed, baselines: params.baselines,
                    precision: params.precision, model_args: params.model_args ?: '',
                    embeddings: params.embeddings ?: '', input: params.input ?: '', datasets: params.datasets ?: '',
                    session: workflow.sessionId.toString(), nextflow: nextflow.version.toString(),
                    revision: workflow.revision ?: '', commit: workflow.commitId ?: '', profile: workflow.profile,
                    container_engine: workflow.containerEngine ?: '']
    def header_lines = [BenchmarkPlan.planLine('run', run_info)] +
        model_list.collect { m -> BenchmarkPlan.planLine('model', m.findAll { k, v -> k != 'config' }) } +
        (sheet_datasets + catalog_datasets).collect { d -> BenchmarkPlan.planLine('dataset', d[0]) }.sort()

    emit:
    datasets   = channel.fromList(sheet_datasets).mix(ch_catalog)  // [dataset meta, h5ad]
    models     = channel.fromList(model_list)                          // model descriptions
    embeddings = channel.fromList(byo)                             // bring-your-own rows
    header     = channel.value(header_lines.join('\n'))                 // plan lines: run, models, datasets
}
