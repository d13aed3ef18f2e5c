process REPORT {
    label 'process_single'

    input:
    path(metrics, stageAs: 'metrics/*')
    path(verdicts, stageAs: 'verdicts/*')

    output:
    path("benchmark_results.json"), emit: json
    path("benchmark_results.csv"), emit: csv

    script:
    """
    czb_report.py --metrics ${metrics} --verdicts ${verdicts} --outdir .
    """

    stub:
    """
    czb_report.py --metrics ${metrics} --verdicts ${verdicts} --outdir .
    """
}
