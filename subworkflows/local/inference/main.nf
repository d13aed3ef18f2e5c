/*
 * Inference: each model on the datasets the gate let through, in its own container; or, with
 * --embeddings, the user's embeddings imported in place of a model's output.
 */
include { RUN_MODEL         } from '../../../modules/local/run_model'
include { IMPORT_EMBEDDINGS } from '../../../modules/local/import_embeddings'

workflow INFERENCE {
    take:
    ch_models     // [dataset meta, model, h5ad, weights folder]
    ch_external   // [dataset meta, model, h5ad] pairs of bring-your-own models
    ch_embeddings // bring-your-own rows [dataset, model, obsm_key, h5ad]

    main:
    RUN_MODEL(ch_models.map { dataset, model, h5ad, weights ->
        [dataset, model, h5ad, weights, file("${projectDir}/bin/${model.script}", checkIfExists: true)]
    })
    IMPORT_EMBEDDINGS(
        ch_external
            .map { dataset, model, h5ad -> [[dataset.id, model.name], dataset, model, h5ad] }
            .join(ch_embeddings.map { row -> [[row.dataset, row.model], row.obsm_key, row.h5ad] })
            .map { key, dataset, model, h5ad, obsm_key, embedding -> [dataset, model, obsm_key, embedding, h5ad] }
    )

    emit:
    outputs = RUN_MODEL.out.output.mix(IMPORT_EMBEDDINGS.out.output)  // [dataset meta, model, output h5ad]
}
