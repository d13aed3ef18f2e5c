import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic
import java.nio.file.Path
import nextflow.exception.AbortOperationException
import org.yaml.snakeyaml.Yaml

/**
 * What the run will do, decided from the task catalogue (conf/tasks.yaml), the model registry
 * (conf/models.yaml), the samplesheet rows and the gate's verdicts. The workflows route by these
 * functions only; REPORT receives the cells they schedule (see docs/output.md, "plan").
 *
 * Two descriptions travel through the channels, separately:
 *   dataset meta  [id, organism, label_key, batch_key, condition_key, split_key, group, tasks,
 *                  counts_layer, scvi_batch_columns]
 *   model         [name, entry, role, model_type, variant, output, script, model_class, config,
 *                  container, needs_weights, datasets]
 * (`name` is 'baseline' for every baseline and `entry` its registry key, which is also its variant,
 * as czbenchmarks reports baselines: model BASELINE, variant pca / raw_expression / control_mean ...)
 */
class BenchmarkPlan {

    static final List<String> DATASET_COLUMNS = ['label_key', 'batch_key', 'condition_key', 'split_key']

    // ---- catalogues -------------------------------------------------------------------------

    /** The task catalogue: task name -> [scores, baselines, multi_dataset, needs]. */
    static Map<String, Map> loadTasks(Path path) {
        Map doc = new Yaml().load(path.text) as Map
        return (doc.tasks ?: [:]) as Map<String, Map>
    }

    /** The model registry: entry name -> its fields. */
    static Map<String, Map> loadRegistry(Path path) {
        Map doc = new Yaml().load(path.text) as Map
        return (doc.models ?: [:]) as Map<String, Map>
    }

    /** `--tasks "clustering,embedding"` or `all` -> task names (unknown names stop the run). */
    static List<String> requestedTasks(String tasks, Map<String, Map> catalogue) {
        List<String> asked = (tasks ?: 'all').tokenize(',')*.trim().findAll { it }
        if (asked == ['all']) return catalogue.keySet() as List<String>
        List<String> unknown = asked - catalogue.keySet()
        if (unknown) {
            throw new AbortOperationException("--tasks: unknown task(s) ${unknown.join(', ')}; choose from: all, ${catalogue.keySet().join(', ')}")
        }
        return asked
    }

    /**
     * The tasks one dataset asks for: its `tasks` column, or every task whose needed columns the row
     * names (a perturbation dataset — one with a condition_key — asks only for the tasks that score
     * predictions); always restricted to --tasks. A task named in the column whose needs the row
     * does not meet stops the run with the row named.
     */
    static List<String> datasetTasks(Map row, List<String> requested, Map<String, Map> catalogue, String where) {
        List<String> tasks
        if (row.tasks) {
            tasks = (row.tasks as String).tokenize(';|')*.trim().findAll { it }
            List<String> unknown = tasks - catalogue.keySet()
            if (unknown) {
                throw new AbortOperationException("${where}: unknown task(s) ${unknown.join(', ')} in column tasks; choose from: ${catalogue.keySet().join(', ')}")
            }
            tasks.each { String task ->
                String unmet = unmetNeed(row, catalogue[task])
                if (unmet) throw new AbortOperationException("${where}: task ${task} needs ${unmet}")
            }
        } else {
            boolean perturbation = row.condition_key as boolean
            tasks = catalogue.findAll { String task, Map spec ->
                !unmetNeed(row, spec) && ((spec.scores == 'prediction') == perturbation)
            }.keySet() as List<String>
        }
        return tasks.findAll { it in requested }
    }

    /** The first need of a task that a samplesheet row does not meet, as words; null when all are met. */
    static String unmetNeed(Map row, Map spec) {
        Map needs = (spec.needs ?: [:]) as Map
        for (String column : (needs.columns ?: []) as List<String>) {
            if (!row[column]) return "a ${column} (samplesheet column)"
        }
        if (needs.group && !row.cross_species_group) {
            return "a cross_species_group (samplesheet column naming the datasets compared across organisms)"
        }
        return null
    }

    /** One dataset's meta map, from a samplesheet row or a catalogue entry (the same keys). */
    static Map datasetMeta(Map row, List<String> requested, Map<String, Map> catalogue, String where) {
        return [
            id           : row.id as String,
            organism     : (row.organism ?: '') as String,
            label_key    : (row.label_key ?: '') as String,
            batch_key    : (row.batch_key ?: '') as String,
            condition_key: (row.condition_key ?: '') as String,
            split_key    : row.condition_key ? (row.split_key ?: 'split') as String : '',
            group        : (row.cross_species_group ?: '') as String,
            tasks        : datasetTasks(row, requested, catalogue, where),
            // Where the raw counts are (X, raw.X or a layer; '' = VALIDATE detects) and scVI's batch roles.
            counts_layer : (row.counts_layer ?: '') as String,
            scvi_batch_columns: (row.scvi_batch_columns ?: '') as String,
        ]
    }

    // ---- models and baselines ------------------------------------------------------------------

    /** A registry entry as the model description the channels carry (`image`: under `imagePrefix`). */
    static Map modelOf(String key, Map entry, String variant, String imagePrefix = '', Map options = [:]) {
        boolean baseline = entry.role == 'baseline'
        // A reduced precision applies only to entries that declare it; the others run float32.
        List<String> precisions = (entry.precisions ?: ['float32']) as List<String>
        String precision = precisions.contains(options.precision as String) ? options.precision as String : 'float32'
        return [
            name         : baseline ? 'baseline' : key,
            entry        : key,
            role         : (entry.role ?: 'model') as String,
            model_type   : (entry.model_type ?: key.toUpperCase()) as String,
            variant      : baseline ? key : (variant ?: (entry.default_variant ?: '')) as String,
            output       : (entry.output ?: 'embedding') as String,
            script       : (entry.script ?: '') as String,
            model_class  : (entry.model_class ?: '') as String,
            config       : (entry.config ?: '') as String,
            container    : (entry.container ?: '') as String,
            image        : entry.container ? ((imagePrefix ? "${imagePrefix}/" : '') + entry.container) as String : '',
            needs_weights: !baseline && entry.needs_weights != false,
            precision    : precision,
            args         : ((options.model_args ?: [:])[key] ?: '') as String,
            datasets     : [],
        ]
    }

    /**
     * `--model_args "geneformer=--emb_layer 0;uce=--species_mode human"` -> [geneformer: '--emb_layer 0', ...]:
     * extra command-line options of one model's script. Names must be registry models.
     */
    static Map<String, String> modelArgs(String text, Map<String, Map> registry) {
        Map<String, String> out = [:]
        (text ?: '').tokenize(';')*.trim().findAll { it }.each { String item ->
            int eq = item.indexOf('=')
            String name = eq > 0 ? item.substring(0, eq).trim() : ''
            if (!registry.containsKey(name) || registry[name].role == 'baseline') {
                throw new AbortOperationException("--model_args: '${item}' must be <model>=<options> with a model of the registry " +
                    "(${registry.findAll { k, v -> v.role != 'baseline' }.keySet().join(', ')})")
            }
            out[name] = item.substring(eq + 1).trim()
        }
        return out
    }

    /** `--models "scvi,geneformer:gf-6L-30M-i2048"` -> model descriptions (baselines are not named here). */
    static List<Map> requestedModels(String models, Map<String, Map> registry, String imagePrefix = '', Map options = [:]) {
        List<String> asked = (models ?: '').tokenize(',')*.trim().findAll { it }
        List<String> known = registry.findAll { k, v -> v.role != 'baseline' }.keySet() as List<String>
        if (!asked) throw new AbortOperationException("--models is empty; choose from: ${known.join(', ')}")
        return asked.collect { String item ->
            List parts = item.contains(':') ? (item.split(':', 2) as List) : [item, null]
            String name = parts[0]
            Map entry = registry[name]
            if (entry == null || entry.role == 'baseline') {
                throw new AbortOperationException("--models: unknown model '${name}'; known models: ${known.join(', ')}")
            }
            modelOf(name, entry, parts[1] as String, imagePrefix, options)
        }
    }

    /** Every baseline the registry holds (each scored only by the tasks that list it). */
    static List<Map> baselines(Map<String, Map> registry, String imagePrefix = '') {
        return registry.findAll { k, v -> v.role == 'baseline' }.collect { k, v -> modelOf(k as String, v as Map, null, imagePrefix) }
    }

    /**
     * Bring-your-own embeddings (--embeddings rows) as models of their own, one per model name.
     * The gate checks their datasets with the baselines' validator (any organism, any genes).
     */
    static List<Map> externalModels(List<Map> rows) {
        return rows*.model.unique().collect { String name ->
            [name: name, entry: name, role: 'external', model_type: 'EXTERNAL', variant: '', output: 'embedding',
             script: 'baseline_pca.py', model_class: 'PcaBaseline', config: 'containers/baseline/config.yaml',
             container: '', image: '', needs_weights: false, datasets: rows.findAll { it.model == name }*.dataset]
        }
    }

    // ---- what scores what ------------------------------------------------------------------------

    /** Does `task` score this model's (or baseline's) output? */
    static boolean scores(Map model, String task, Map<String, Map> catalogue) {
        Map spec = catalogue[task]
        if (model.role == 'baseline') return model.entry in (spec.baselines ?: [])
        return spec.scores == model.output
    }

    /** The single-dataset tasks of `dataset` that score `model`'s output (empty: the pair is not run). */
    static List<String> singleTasks(Map dataset, Map model, Map<String, Map> catalogue) {
        if (model.role == 'external' && !(dataset.id in model.datasets)) return []
        return (dataset.tasks as List<String>).findAll { !catalogue[it].multi_dataset && scores(model, it, catalogue) }
    }

    /** The multi-dataset tasks (cross_species) of `dataset` that join `model`'s outputs. */
    static List<String> groupTasks(Map dataset, Map model, Map<String, Map> catalogue) {
        if (model.role != 'model' || !dataset.group) return []
        return (dataset.tasks as List<String>).findAll { catalogue[it].multi_dataset && scores(model, it, catalogue) }
    }

    /** Is the dataset x model pair run at all? Only when some requested task will score it. */
    static boolean runs(Map dataset, Map model, Map<String, Map> catalogue) {
        return singleTasks(dataset, model, catalogue) || groupTasks(dataset, model, catalogue)
    }

    // ---- the gate's verdicts ---------------------------------------------------------------------

    /** A JSON file as plain maps and lists. JsonSlurper's LazyMap builds itself on first access and is not
     *  thread-safe: a verdict shared by several channels was seen to throw NullPointerException in
     *  `LazyMap.equals` when two operators read it at once. JsonSlurperClassic builds it eagerly. */
    static Object readJson(Path json) {
        return new JsonSlurperClassic().parse(json.toFile())
    }

    /** A verdict JSON file as a map. */
    static Map readVerdict(Path json) {
        return readJson(json) as Map
    }

    /** Model description with the variant the gate resolved (per dataset: scVI picks it by organism)
     *  and where the pair's inputs are (`inputs.counts_layer`: the counts VALIDATE found). */
    static Map resolved(Map model, Map verdict) {
        return model + [variant: (verdict.variant ?: model.variant ?: '') as String,
                        inputs : (verdict.inputs ?: [:]) as Map]
    }

    /**
     * The plan cells of one gated pair: one per single-dataset task that scores it, `scheduled`, or
     * `not_applicable` with the reason (the pair is incompatible, or the dataset cannot support the
     * task). A verdict `error` (the dataset itself is broken) leaves its cells scheduled: they then
     * come back missing, with the verdict's reasons, and the run says it failed.
     */
    static List<Map> cells(Map dataset, Map model, Map verdict, Map<String, Map> catalogue) {
        Map notApplicable = (verdict.not_applicable ?: [:]) as Map
        return singleTasks(dataset, model, catalogue).collect { String task ->
            Map cell = cellKey([dataset.id as String], model, task)
            if (verdict.verdict == 'incompatible') {
                return cell + [status: 'not_applicable', reason: (verdict.reasons as List).join('; ')]
            }
            if (verdict.verdict == 'pass' && notApplicable[task]) {
                return cell + [status: 'not_applicable', reason: notApplicable[task] as String]
            }
            return cell + [status: 'scheduled', reason: verdict.verdict == 'pass' ? '' : (verdict.reasons as List).join('; ')]
        }
    }

    /** The identity of a result cell, as REPORT and the metrics files name it (`entry`: the registry
     *  entry, which tells the baselines apart where `model` is 'baseline' for all of them). */
    static Map cellKey(List<String> ids, Map model, String task) {
        return [dataset: ids.join('+'), datasets: ids, model: model.name, entry: model.entry, variant: model.variant, task: task]
    }

    /** A pair's tasks the gate let through: scheduled cells only. */
    static List<String> scheduledTasks(List<Map> cells) {
        return cells.findAll { it.status == 'scheduled' }*.task
    }

    /**
     * The cross-species cell of one group x model from its members' gate results
     * ([dataset meta, model, verdict] each): scheduled over the members that passed when they span
     * two or more organisms, otherwise not applicable with the reason.
     */
    static Map groupCell(String group, List<List> members, String task) {
        List<List> passed = members.findAll { it[2].verdict == 'pass' && !((it[2].not_applicable ?: [:]) as Map)[task] }
            .sort { it[0].id }
        List<List> source = passed ?: members.sort { it[0].id }
        Map model = source[0][1] as Map
        Map variantModel = model + [variant: source.collect { it[1].variant }.unique().join('+')]
        Map cell = cellKey(source.collect { it[0].id as String }, variantModel, task) + [group: group]
        List<String> organisms = passed.collect { it[0].organism as String }.unique()
        List<String> labelKeys = passed.collect { it[0].label_key as String }.unique()
        if (organisms.size() >= 2 && labelKeys.size() > 1) {
            return cell + [status: 'not_applicable',
                           reason: "cross-species group '${group}' names different label columns (${labelKeys.join(', ')}); harmonise them to one"]
        }
        if (organisms.size() >= 2) return cell + [status: 'scheduled', reason: '']
        List<String> why = members.findAll { !(it in passed) }.collect { List m ->
            String reason = m[2].verdict != 'pass' ? (m[2].reasons as List).join('; ') : ((m[2].not_applicable as Map)[task] as String)
            "${m[0].id}: ${reason}"
        }
        return cell + [status: 'not_applicable',
                       reason: "cross-species group '${group}' has ${organisms.size()} organism(s) the model can embed (needs 2+)" +
                               (why ? "; ${why.join('; ')}" : '')]
    }

    /** One JSON line of the plan REPORT reads. */
    static String planLine(String kind, Map fields) {
        return JsonOutput.toJson([kind: kind] + fields)
    }
}
