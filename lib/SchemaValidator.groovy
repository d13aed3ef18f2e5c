import groovy.json.JsonSlurper
import java.nio.file.Path

/**
 * Validates params and samplesheet rows against nextflow_schema.json / assets/schema_input.json
 * without the nf-schema plugin (plugins cannot load offline). Covers the JSON-schema keywords
 * those two files use: type, enum, pattern, minimum, maximum, required, format file-path.
 */
class SchemaValidator {

    /** Every error for ``params`` against the pipeline schema (empty list: valid). */
    static List<String> paramErrors(Map params, Path schemaFile) {
        def schema = new JsonSlurper().parse(schemaFile.toFile())
        Map<String, Map> properties = [:]
        List<String> required = []
        (schema.'$defs' ?: [:]).each { String group, Map definition ->
            properties.putAll(definition.properties ?: [:])
            required.addAll(definition.required ?: [])
        }
        properties.putAll(schema.properties ?: [:])
        def errors = []
        params.each { String name, value ->
            // Nextflow also exposes camelCase copies of kebab-case params; check the original only.
            if (name.contains('-') && properties.containsKey(name.replace('-', '_'))) return
            if (!properties.containsKey(name)) {
                if (!properties.keySet().any { it.equalsIgnoreCase(name) || kebabToSnake(name) == it }) {
                    def hint = closest(name, properties.keySet())
                    errors << "unknown parameter --${name}${hint ? "; did you mean --${hint}?" : ''}"
                }
                return
            }
            if (value != null && value != '') errors.addAll(valueErrors("--${name}", value, properties[name]))
        }
        required.each { name ->
            if (params[name] == null || params[name] == '') errors << "missing required parameter --${name}"
        }
        return errors
    }

    /** Every error for samplesheet ``rows`` (maps from splitCsv(header: true)) against the row schema. */
    static List<String> rowErrors(List<Map> rows, Path schemaFile, String sheetName) {
        def schema = new JsonSlurper().parse(schemaFile.toFile())
        Map<String, Map> properties = schema.items.properties
        List<String> required = schema.items.required ?: []
        def errors = []
        if (!rows) {
            errors << "samplesheet ${sheetName}: no rows"
        }
        rows.eachWithIndex { Map row, int index ->
            def where = "samplesheet ${sheetName}, row ${index + 2}, dataset '${row.id ?: '?'}'"
            required.each { name ->
                if (!row[name]) errors << "${where}: missing value for '${name}'"
            }
            row.each { String column, value ->
                if (!properties.containsKey(column)) {
                    errors << "${where}: unknown column '${column}' (columns: ${properties.keySet().join(', ')})"
                } else if (value != null && value != '') {
                    errors.addAll(valueErrors("${where}: ${column}", value, properties[column]))
                }
            }
        }
        return errors
    }

    static List<String> valueErrors(String what, Object value, Map spec) {
        def errors = []
        def type = spec.type
        def text = value?.toString()
        if (type == 'integer' && !(value instanceof Integer || value instanceof Long || text ==~ /-?\d+/)) {
            errors << "${what}: expected an integer, got '${text}'"
        } else if (type == 'number' && !(value instanceof Number || text ==~ /-?\d+(\.\d+)?([eE]-?\d+)?/)) {
            errors << "${what}: expected a number, got '${text}'"
        } else if (type == 'boolean' && !(value instanceof Boolean || text in ['true', 'false'])) {
            errors << "${what}: expected true or false, got '${text}'"
        } else if (type == 'string' && !(value instanceof CharSequence || value instanceof Path)) {
            errors << "${what}: expected a string, got '${text}'"
        }
        if (errors) return errors
        if (spec.enum && !(text in spec.enum*.toString())) {
            errors << "${what}: '${text}' is not one of ${spec.enum.join(', ')}"
        }
        if (spec.pattern && !(text ==~ spec.pattern)) {
            errors << "${what}: '${text}' does not match ${spec.pattern}${spec.errorMessage ? " (${spec.errorMessage})" : ''}"
        }
        if (spec.minimum != null && text.isNumber() && (text as BigDecimal) < (spec.minimum as BigDecimal)) {
            errors << "${what}: ${text} is below the minimum ${spec.minimum}"
        }
        if (spec.maximum != null && text.isNumber() && (text as BigDecimal) > (spec.maximum as BigDecimal)) {
            errors << "${what}: ${text} is above the maximum ${spec.maximum}"
        }
        return errors
    }

    /** `--help`: every parameter of the schema, grouped, with its type, default and description. */
    static String helpText(Path schemaFile, String name) {
        def schema = new JsonSlurper().parse(schemaFile.toFile())
        def lines = ["${name}: ${schema.description ?: ''}", '', 'Usage: nextflow run main.nf -profile <docker,gpu|test|...> --input samplesheet.csv --models scvi,...', '']
        (schema.'$defs' ?: [:]).each { String group, Map definition ->
            lines << "${definition.title ?: group}:"
            (definition.properties ?: [:]).each { String param, Map spec ->
                if (spec.hidden) return
                def default_ = spec.containsKey('default') ? " [default: ${spec.default}]" : ''
                lines << "  --${param.padRight(22)} ${spec.type ?: ''}  ${spec.description ?: ''}${default_}"
            }
            lines << ''
        }
        return lines.join('\n')
    }

    private static String kebabToSnake(String name) {
        return name.replaceAll(/([A-Z])/) { all, c -> '_' + c.toLowerCase() }
    }

    /** The known name nearest to ``name`` (Levenshtein distance <= 3), for "did you mean". */
    static String closest(String name, Collection<String> known) {
        def best = null
        def bestDistance = 4
        known.each { candidate ->
            def d = distance(name.toLowerCase(), candidate.toLowerCase())
            if (d < bestDistance) { best = candidate; bestDistance = d }
        }
        return best
    }

    private static int distance(String a, String b) {
        int[] previous = (0..b.length()) as int[]
        for (int i = 1; i <= a.length(); i++) {
            int[] current = new int[b.length() + 1]
            current[0] = i
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1
                current[j] = Math.min(Math.min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost)
            }
            previous = current
        }
        return previous[b.length()]
    }
}
