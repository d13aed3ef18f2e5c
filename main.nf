#!/usr/bin/env nextflow
/*
 * czbenchmarks-nf: benchmark single-cell foundation models.
 * For every dataset x model: validate, fetch weights once, run the model in its own container,
 * score the outputs next to baselines, and write one report.
 */
nextflow.enable.dsl = 2

include { CZBENCHMARKS    } from './workflows/czbenchmarks'
include { readSamplesheet } from './workflows/czbenchmarks'
include { catalogDatasets } from './workflows/czbenchmarks'
include { FETCH_DATASET   } from './modules/local/fetch_dataset'

workflow {
    // Params and samplesheet against nextflow_schema.json / assets/schema_input.json (no plugin needed).
    def errors = SchemaValidator.paramErrors(params, file("${projectDir}/nextflow_schema.json"))
    if (!errors && params.input) {
        def sheet = file(params.input)
        if (!sheet.exists()) {
            errors << "--input: samplesheet not found: ${params.input}"
        } else {
            def rows = sheet.splitCsv(header: true, strip: true)
            errors += SchemaValidator.rowErrors(rows, file("${projectDir}/assets/schema_input.json"), sheet.name)
        }
    }
    if (!errors && !params.input && !params.datasets) {
        errors << "give --input (a samplesheet) and/or --datasets (names from ${params.dataset_catalog})"
    }
    if (errors) {
        error "Invalid parameters or samplesheet:\n  - " + errors.join("\n  - ")
    }
    // Catalog datasets are fetched into the checksummed dataset cache, then join the samplesheet's.
    def ch_sheet = params.input ? readSamplesheet(params.input) : Channel.empty()
    FETCH_DATASET(Channel.fromList(params.datasets ? catalogDatasets(params.datasets, params.dataset_catalog, params.input) : []))
    ch_catalog = FETCH_DATASET.out.folder.map { meta, folder -> [meta, folder.listFiles().find { it.name.endsWith('.h5ad') }] }
    CZBENCHMARKS(ch_sheet.mix(ch_catalog))

    workflow.onComplete = {
        def outdir = params.outdir
        log.info(workflow.success
            ? "czbenchmarks-nf done in ${workflow.duration}: ${outdir}/benchmark_results.csv"
            : "czbenchmarks-nf failed: ${workflow.errorMessage ?: 'see .nextflow.log'}")
    }
}
