/*
 * The benchmark workflow: gate -> inference and baselines -> evaluation -> report.
 * Channel wiring only; what runs where is decided by lib/BenchmarkPlan.groovy from the task
 * catalogue (conf/tasks.yaml) and the model registry (conf/models.yaml).
 */
include { GATE       } from '../subworkflows/local/gate'
include { INFERENCE  } from '../subworkflows/local/inference'
include { BASELINES  } from '../subworkflows/local/baselines'
include { EVALUATION } from '../subworkflows/local/evaluation'
include { REPORTING  } from '../subworkflows/local/report'

workflow CZBENCHMARKS {
    take:
    ch_datasets   // [dataset meta, h5ad]
    ch_models     // model descriptions: models, baselines, bring-your-own
    ch_embeddings // bring-your-own rows
    ch_header     // value: the plan's header lines

    main:
    GATE(ch_datasets, ch_models)
    ch_cpu = GATE.out.baselines.branch { dataset, model, h5ad ->
        external: model.role == 'external'
        baseline: true
    }
    INFERENCE(GATE.out.models, ch_cpu.external, ch_embeddings)
    BASELINES(ch_cpu.baseline)

    ch_outputs = INFERENCE.out.outputs.mix(BASELINES.out.outputs)
    EVALUATION(ch_outputs, ch_datasets, GATE.out.groups)

    REPORTING(
        EVALUATION.out.metrics,
        GATE.out.verdicts,
        GATE.out.plan,
        ch_header,
        ch_outputs.filter { dataset, model, output -> model.output == 'embedding' }.map { dataset, model, output -> output },
    )

    emit:
    results = REPORTING.out.results
}
