/*
 * Evaluation: one EVALUATE per output x scheduled task, and one per scheduled cross-species cell
 * (the group's outputs of one model, joined).
 */
include { EVALUATE } from '../../../modules/local/evaluate'

// What EVALUATE needs to know about a cell beyond its key.
def evaluationCell(Map key, List datasets, Map model) {
    Map first = datasets[0]
    return key + [organisms: datasets*.organism, model_type: model.model_type, input_kind: model.output,
                  label_key: first.label_key, batch_key: first.batch_key,
                  condition_key: first.condition_key, split_key: first.split_key,
                  // Where VALIDATE found the counts (the raw-expression baseline scores them).
                  counts_layer: (model.inputs?.counts_layer ?: first.counts_layer ?: '') as String]
}

workflow EVALUATION {
    take:
    ch_outputs  // [dataset meta, model (with its scheduled tasks), output h5ad]
    ch_datasets // [dataset meta, h5ad]
    ch_groups   // cross-species cells (scheduled or not applicable)

    main:
    ch_dataset_files = ch_datasets.map { dataset, h5ad -> [dataset.id, h5ad] }
    ch_single = ch_outputs
        .flatMap { dataset, model, output ->
            model.tasks.collect { task -> [dataset.id, dataset, model, task, output] }
        }
        .combine(ch_dataset_files, by: 0)
        .map { id, dataset, model, task, output, h5ad ->
            [evaluationCell(BenchmarkPlan.cellKey([id], model, task), [dataset], model), [output], [h5ad]]
        }

    // A group's cell runs once every member's output is there (a member that failed leaves it missing).
    ch_group = ch_groups
        .filter { cell -> cell.status == 'scheduled' }
        .flatMap { cell -> cell.datasets.collect { id -> [[id, cell.model], cell] } }
        .combine(ch_outputs.map { dataset, model, output -> [[dataset.id, model.name], dataset, model, output] }, by: 0)
        .map { key, cell, dataset, model, output -> [cell.subMap(['dataset', 'model', 'task']), cell, dataset, model, output] }
        .groupTuple(by: 0)
        .filter { key, cells, datasets, models, outputs -> datasets*.id.toSorted() == cells[0].datasets }
        .map { key, cells, datasets, models, outputs ->
            def order = (0..<datasets.size()).toList().sort { i -> datasets[i].id }
            def cell = cells[0].subMap(['dataset', 'datasets', 'model', 'variant', 'task'])
            [evaluationCell(cell, order.collect { i -> datasets[i] }, models[0]), order.collect { i -> outputs[i] }, []]
        }

    EVALUATE(ch_single.mix(ch_group))

    emit:
    metrics = EVALUATE.out.metrics  // [cell, metrics JSON]
}
