/*
 * The gate: everything that can be decided before a GPU is decided here. Only pairs that some
 * requested task will score are considered; VALIDATE reads metadata and a sample of X; weights are
 * fetched once per model x variant; the vocabulary overlap is checked on the fetched folder.
 * Emits the pairs ready to run, and the plan lines (pairs and cells) REPORT compares results with.
 */
include { VALIDATE         } from '../../../modules/local/validate'
include { FETCH_WEIGHTS    } from '../../../modules/local/fetch_weights'
include { CHECK_VOCABULARY } from '../../../modules/local/check_vocabulary'

workflow GATE {
    take:
    ch_datasets // [dataset meta, h5ad]
    ch_models   // model descriptions (role model | baseline)

    main:
    def catalogue = BenchmarkPlan.loadTasks(file(params.task_catalogue))
    ch_pairs = ch_datasets
        .combine(ch_models)
        .filter { dataset, h5ad, model -> BenchmarkPlan.runs(dataset, model, catalogue) }

    VALIDATE(ch_pairs.map { dataset, h5ad, model ->
        [dataset, model, h5ad, file("${projectDir}/bin/${model.script}", checkIfExists: true),
         file("${projectDir}/${model.config}", checkIfExists: true), file(params.task_catalogue)]
    })

    ch_gated = VALIDATE.out.verdict.map { dataset, model, h5ad, json, request ->
        def verdict = BenchmarkPlan.readVerdict(json)
        if (params.fail_on_incompatible && verdict.verdict != 'pass') {
            error("Dataset '${dataset.id}' x model '${model.name}': ${verdict.verdict}: ${verdict.reasons.join('; ')}")
        }
        def resolved = BenchmarkPlan.resolved(model, verdict)
        def cells = BenchmarkPlan.cells(dataset, resolved, verdict, catalogue)
        [dataset, resolved + [tasks: BenchmarkPlan.scheduledTasks(cells)], h5ad, verdict, cells, request]
    }

    // Pairs the gate lets through; a pair whose every cell is not applicable stops here.
    ch_passed = ch_gated
        .filter { dataset, model, h5ad, verdict, cells, request ->
            verdict.verdict == 'pass' && (model.tasks || BenchmarkPlan.groupTasks(dataset, model, catalogue)
                .findAll { task -> !((verdict.not_applicable ?: [:]) as Map)[task] })
        }
        .branch { dataset, model, h5ad, verdict, cells, request ->
            weighted: model.needs_weights
            baseline: true
        }

    // Weights: once per model x variant (x source), cached across runs by storeDir.
    ch_requests = ch_passed.weighted.map { dataset, model, h5ad, verdict, cells, request ->
        [dataset, model, h5ad, verdict, BenchmarkPlan.readJson(request)]
    }
    FETCH_WEIGHTS(ch_requests.map { pair -> pair[4] }.unique())
    ch_fetched = ch_requests
        .map { dataset, model, h5ad, verdict, request -> [[request.model, request.weights_key], dataset, model, h5ad, verdict] }
        .combine(FETCH_WEIGHTS.out.weights.map { request, folder -> [[request.model, request.weights_key], folder] }, by: 0)
        .map { key, dataset, model, h5ad, verdict, folder -> [dataset, model, h5ad, verdict, folder] }
        .branch { dataset, model, h5ad, verdict, folder ->
            vocabulary: verdict.vocabulary_check
            ready: true
        }

    // The vocabulary overlap, on the fetched folder: a pure function of the dataset and the weights.
    CHECK_VOCABULARY(ch_fetched.vocabulary.map { dataset, model, h5ad, verdict, folder ->
        [dataset, model, h5ad, folder, file("${projectDir}/bin/${model.script}"), file("${projectDir}/${model.config}")]
    })
    ch_vocabulary = CHECK_VOCABULARY.out.verdict.map { dataset, model, h5ad, folder, json ->
        [dataset, model, h5ad, folder, json, BenchmarkPlan.readVerdict(json)]
    }
    .branch { dataset, model, h5ad, folder, json, verdict ->
        pass: verdict.verdict == 'pass'
        refused: true
    }
    ch_vocabulary_cells = ch_vocabulary.refused.flatMap { dataset, model, h5ad, folder, json, verdict ->
        if (params.fail_on_incompatible) {
            error("Dataset '${dataset.id}' x model '${model.name}': ${verdict.verdict}: ${verdict.reasons.join('; ')}")
        }
        BenchmarkPlan.cells(dataset, model, verdict, catalogue).collect { c -> BenchmarkPlan.planLine('cell', c + [stage: 'vocabulary']) }
    }

    // Every pair considered, then every cell the gate decided (REPORT: a later stage overrides).
    ch_plan = ch_pairs.map { dataset, h5ad, model -> BenchmarkPlan.planLine('pair', [dataset: dataset.id, model: model.name, entry: model.entry]) }
        .mix(ch_gated.flatMap { dataset, model, h5ad, verdict, cells, request ->
            cells.collect { c -> BenchmarkPlan.planLine('cell', c + [stage: 'validate']) }
        })
        .mix(ch_vocabulary_cells)

    // Cross-species: one cell per group x model, from the members' final gate verdicts.
    ch_final = ch_gated
        .filter { dataset, model, h5ad, verdict, cells, request -> !(verdict.verdict == 'pass' && model.needs_weights && verdict.vocabulary_check) }
        .map { dataset, model, h5ad, verdict, cells, request -> [dataset, model, verdict] }
        .mix(ch_vocabulary.pass.mix(ch_vocabulary.refused).map { dataset, model, h5ad, folder, json, verdict -> [dataset, model, verdict] })
    ch_group_cells = ch_final
        .flatMap { dataset, model, verdict ->
            BenchmarkPlan.groupTasks(dataset, model, catalogue).collect { task -> [[dataset.group, model.entry, task], [dataset, model, verdict]] }
        }
        .groupTuple(by: 0)
        .map { key, members -> BenchmarkPlan.groupCell(key[0], members, key[2]) }

    emit:
    models    = ch_fetched.ready.map { dataset, model, h5ad, verdict, folder -> [dataset, model, h5ad, folder] }
                    .mix(ch_vocabulary.pass.map { dataset, model, h5ad, folder, json, verdict -> [dataset, model, h5ad, folder] })
    baselines = ch_passed.baseline.map { dataset, model, h5ad, verdict, cells, request -> [dataset, model, h5ad] }
    groups    = ch_group_cells                                        // cross-species cells (scheduled or not)
    plan      = ch_plan.mix(ch_group_cells.map { c -> BenchmarkPlan.planLine('cell', c + [stage: 'group']) })
    verdicts  = VALIDATE.out.verdict.map { out -> out[3] }.mix(CHECK_VOCABULARY.out.verdict.map { out -> out[4] })
}
