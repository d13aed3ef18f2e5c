/*
 * Baselines, run as if they were models: each a registry entry (role: baseline) with its output
 * kind. Those with a script (PCA, control mean/median) run on CPU; raw expression is the dataset
 * itself, scored directly.
 */
include { RUN_BASELINE } from '../../../modules/local/run_baseline'

workflow BASELINES {
    take:
    ch_baselines // [dataset meta, model, h5ad]

    main:
    ch_kind = ch_baselines.branch { dataset, model, h5ad ->
        expression: model.output == 'expression'
        computed: true
    }
    RUN_BASELINE(ch_kind.computed.map { dataset, model, h5ad ->
        [dataset, model, h5ad, file("${projectDir}/bin/${model.script}", checkIfExists: true)]
    })

    emit:
    outputs = RUN_BASELINE.out.output.mix(ch_kind.expression)  // [dataset meta, model, output h5ad]
}
