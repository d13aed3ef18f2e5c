#!/usr/bin/env nextflow
/*
 * czbenchmarks-nf: benchmark single-cell foundation models.
 * For every dataset x model: validate, fetch weights once, run the model in its own container,
 * score the outputs next to baselines, and write one report.
 */
include { INITIALISE   } from './subworkflows/local/initialise'
include { CZBENCHMARKS } from './workflows/czbenchmarks'

workflow {
    INITIALISE()
    CZBENCHMARKS(INITIALISE.out.datasets, INITIALISE.out.models, INITIALISE.out.embeddings, INITIALISE.out.header)

    workflow.onComplete = {
        log.info(workflow.success
            ? "czbenchmarks-nf done in ${workflow.duration}: ${params.outdir}/report.html"
            : "czbenchmarks-nf failed: ${workflow.errorMessage ?: 'see .nextflow.log'} (report: ${params.outdir}/report.html)")
    }
}
