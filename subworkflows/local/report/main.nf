/*
 * Report: every result, every cell that could not apply and every cell that is missing (with why),
 * then the check that fails the run when something that should have been produced was not.
 */
include { REPORT        } from '../../../modules/local/report'
include { CHECK_RESULTS } from '../../../modules/local/check_results'

workflow REPORTING {
    take:
    ch_metrics    // [cell, metrics JSON]
    ch_verdicts   // verdict JSONs
    ch_plan       // plan lines (pairs and cells)
    ch_header     // value: the plan's first lines (run, models, datasets) as one text
    ch_embeddings // embedding outputs for the UMAPs

    main:
    ch_plan_text = ch_plan
        .toSortedList()
        .map { lines -> [lines] }
        .combine(ch_header)
        .map { lines, header -> ([header] + lines).join('\n') }
    REPORT(
        ch_metrics.map { cell, json -> json }.collect().ifEmpty([]),
        ch_verdicts.collect().ifEmpty([]),
        ch_plan_text,
        ch_embeddings.collect().ifEmpty([]),
        // The trace file as nextflow.config names it; REPORT reads it when it can reach it.
        "${file(params.outdir)}/pipeline_info/trace.txt",
        [file("${projectDir}/conf/metrics.yaml", checkIfExists: true), file("${projectDir}/conf/models.yaml", checkIfExists: true)],
    )
    CHECK_RESULTS(REPORT.out.summary)

    emit:
    results = REPORT.out.json
    summary = REPORT.out.summary
}
