#!/usr/bin/env nextflow
/*
 * czbenchmarks-nf: benchmark single-cell foundation models.
 * For every dataset x model: validate, fetch weights once, run the model in its own container,
 * score the outputs next to baselines, and write one report.
 */
nextflow.enable.dsl = 2

include { CZBENCHMARKS } from './workflows/czbenchmarks'
include { readSamplesheet } from './workflows/czbenchmarks'

workflow {
    if (!params.input) {
        error "Missing --input: a samplesheet CSV with columns id,h5ad,organism,label_key[,batch_key] (see assets/samplesheet_test.csv)"
    }
    CZBENCHMARKS(readSamplesheet(params.input))

    workflow.onComplete = {
        def outdir = params.outdir
        log.info(workflow.success
            ? "czbenchmarks-nf done in ${workflow.duration}: ${outdir}/benchmark_results.csv"
            : "czbenchmarks-nf failed: ${workflow.errorMessage ?: 'see .nextflow.log'}")
    }
}
