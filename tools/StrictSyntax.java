/*
 * Checks the pipeline's Nextflow scripts and config files against Nextflow's strict syntax
 * (the parser that `nextflow lint` uses and that Nextflow 26.04 enforces), using the nf-lang
 * library from Maven Central. Run it through tools/strict_syntax.sh, which fetches the JARs and
 * compiles this file:
 *
 *   tools/strict_syntax.sh [--syntax-only] [--warnings] [--list] [PATH...]   (default PATH: the checkout)
 *
 * A PATH that is a directory is taken as a pipeline root: its main.nf, workflows/*.nf,
 * subworkflows/**.nf, modules/**.nf, nextflow.config and conf/**.config are checked, and its
 * lib/*.groovy classes are made known to name resolution (they are plain Groovy, not checked).
 * A PATH that is a file is checked alone (.nf as a script, .config as a config file).
 *
 * Each error is printed as `file:line:col: message`; semantic errors (names, includes, types,
 * found after parsing) end in ` [semantic]`. Warnings (unused variables, deprecations) do not fail
 * the check; --warnings prints them to stderr as `file:line:col: warning: ...`. --syntax-only skips
 * the semantic analysis; --list names every file checked.
 * Exit status: 0 when no errors, 1 when any, 2 on bad usage.
 */

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.HashSet;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import nextflow.config.ast.ConfigAssignNode;
import nextflow.config.ast.ConfigBlockNode;
import nextflow.config.ast.ConfigNode;
import nextflow.config.ast.ConfigVisitorSupport;
import nextflow.config.control.ConfigParser;
import nextflow.config.control.ConfigResolveVisitor;
import nextflow.script.control.Compiler;
import nextflow.script.control.ModuleResolver;
import nextflow.script.control.ParanoidWarning;
import nextflow.script.control.ResolveIncludeVisitor;
import nextflow.script.control.ScriptParser;
import nextflow.script.control.ScriptResolveVisitor;
import nextflow.script.control.TypeCheckingVisitor;
import nextflow.script.types.Types;
import org.codehaus.groovy.ast.ClassNode;
import org.codehaus.groovy.ast.expr.ClosureExpression;
import org.codehaus.groovy.ast.expr.VariableExpression;
import org.codehaus.groovy.control.CompilationFailedException;
import org.codehaus.groovy.control.CompilationUnit;
import org.codehaus.groovy.control.CompilerConfiguration;
import org.codehaus.groovy.control.Phases;
import org.codehaus.groovy.control.SourceUnit;
import org.codehaus.groovy.control.messages.ExceptionMessage;
import org.codehaus.groovy.control.messages.Message;
import org.codehaus.groovy.control.messages.SimpleMessage;
import org.codehaus.groovy.control.messages.SyntaxErrorMessage;
import org.codehaus.groovy.control.messages.WarningMessage;

public class StrictSyntax {

    /** Where the pipeline keeps its scripts, relative to a pipeline root (glob syntax). */
    private static final List<String> SCRIPT_GLOBS = List.of("main.nf", "workflows/*.nf", "subworkflows/**.nf", "modules/**.nf");
    private static final List<String> CONFIG_GLOBS = List.of("nextflow.config", "conf/**.config");

    private final ScriptParser scriptParser = new ScriptParser();
    private final ConfigParser configParser = new ConfigParser();
    private final List<ClassNode> libClasses = new ArrayList<>();
    /** Errors each source had right after parsing: what follows them came from analysis. */
    private final Map<URI, Integer> syntaxErrorCounts = new HashMap<>();
    /** Errors that nf-lang 25.04.0 reports but Nextflow 25.10+ accepts (see ProcessInputReferences). */
    private final Set<Message> acceptedByNewerNextflow = new HashSet<>();
    private final Path displayBase = Path.of("").toAbsolutePath();
    private boolean showWarnings = false;
    private boolean listFiles = false;
    private int warnings = 0;
    private int errors = 0;
    private int files = 0;

    public static void main(String[] args) throws IOException {
        boolean syntaxOnly = false;
        boolean showWarnings = false;
        boolean listFiles = false;
        var paths = new ArrayList<Path>();
        for( var arg : args ) {
            if( arg.equals("--syntax-only") )
                syntaxOnly = true;
            else if( arg.equals("--warnings") )
                showWarnings = true;
            else if( arg.equals("--list") )
                listFiles = true;
            else if( arg.equals("-h") || arg.equals("--help") ) {
                System.out.println("usage: strict_syntax.sh [--syntax-only] [--warnings] [--list] [PIPELINE_DIR_OR_FILE...]");
                return;
            }
            else if( arg.startsWith("-") ) {
                System.err.println("strict_syntax: unknown option " + arg);
                System.exit(2);
            }
            else
                paths.add(Path.of(arg).toAbsolutePath().normalize());
        }
        if( paths.isEmpty() )
            paths.add(Path.of("").toAbsolutePath());

        var checker = new StrictSyntax();
        checker.showWarnings = showWarnings;
        checker.listFiles = listFiles;
        for( var path : paths ) {
            if( Files.isDirectory(path) )
                checker.addPipeline(path);
            else if( Files.isRegularFile(path) )
                checker.addFile(path);
            else {
                System.err.println("strict_syntax: no such file or directory: " + path);
                System.exit(2);
            }
        }
        if( !syntaxOnly )
            checker.analyze();
        int status = checker.report();
        System.exit(status);
    }

    private void addPipeline(Path root) throws IOException {
        var scripts = matching(root, SCRIPT_GLOBS);
        var configs = matching(root, CONFIG_GLOBS);
        if( scripts.isEmpty() && configs.isEmpty() ) {
            System.err.println("strict_syntax: no Nextflow scripts or config files under " + root);
            System.exit(2);
        }
        loadLibClasses(root.resolve("lib"));
        scripts.forEach(this::addFile);
        configs.forEach(this::addFile);
    }

    private void addFile(Path file) {
        var name = file.getFileName().toString();
        SourceUnit source;
        if( name.endsWith(".nf") )
            source = scriptParser.parse(file.toFile());
        else if( name.endsWith(".config") )
            source = configParser.parse(file.toFile());
        else {
            System.err.println("strict_syntax: neither a .nf script nor a .config file: " + file);
            System.exit(2);
            return;
        }
        syntaxErrorCounts.put(source.getSource().getURI(), errorCount(source));
    }

    private static List<Path> matching(Path root, List<String> globs) throws IOException {
        var found = new TreeSet<Path>();
        for( var glob : globs ) {
            var matcher = root.getFileSystem().getPathMatcher("glob:" + glob);
            // Walk only the glob's own top folder: a checkout also holds .venv/, work/ and caches.
            int slash = glob.indexOf('/');
            var top = slash < 0 ? root : root.resolve(glob.substring(0, slash));
            if( !Files.exists(top) )
                continue;
            try( Stream<Path> walk = Files.walk(top, slash < 0 ? 1 : Integer.MAX_VALUE) ) {
                walk.filter(Files::isRegularFile).filter(p -> matcher.matches(root.relativize(p))).forEach(found::add);
            }
        }
        return new ArrayList<>(found);
    }

    /** lib/*.groovy classes are on the pipeline's class path at run time: declare them to the resolver. */
    private void loadLibClasses(Path libDir) throws IOException {
        if( !Files.isDirectory(libDir) )
            return;
        List<Path> sources;
        try( Stream<Path> walk = Files.walk(libDir) ) {
            sources = walk.filter(p -> p.toString().endsWith(".groovy")).sorted().collect(Collectors.toList());
        }
        // lib/ may import Nextflow's own classes, which are not on this class path; Groovy then leaves every
        // type unresolved, and the type checker needs them resolved. So a second pass declares those
        // classes as empty stand-ins (an exception where the name says so): lib/ is only read, never run.
        var unit = compileLib(sources, Map.of());
        var missing = new TreeSet<String>();
        for( var message : unit.getErrorCollector().getErrors() == null ? List.<Message>of() : unit.getErrorCollector().getErrors() ) {
            var m = java.util.regex.Pattern.compile("unable to resolve class ([\\w.$]+)").matcher(String.valueOf(describe(message)));
            if( m.find() )
                missing.add(m.group(1));
        }
        if( !missing.isEmpty() ) {
            var stubs = new HashMap<String, String>();
            for( var name : missing ) {
                int dot = name.lastIndexOf('.');
                var pkg = dot < 0 ? "" : "package " + name.substring(0, dot) + "\n";
                var simple = name.substring(dot + 1);
                stubs.put(name, pkg + "class " + simple + (simple.endsWith("Exception") ? " extends RuntimeException { " + simple + "(Object message) { super(String.valueOf(message)) } }" : " {}"));
            }
            unit = compileLib(sources, stubs);
        }
        if( unit.getErrorCollector().hasErrors() )
            System.err.println("strict_syntax: warning: " + libDir + " does not compile on its own; type checks of the scripts may be skipped");
        unit.iterator().forEachRemaining(su -> {
            if( su.getAST() != null && su.getName().endsWith(".groovy") )
                libClasses.addAll(su.getAST().getClasses());
        });
    }

    private static CompilationUnit compileLib(List<Path> sources, Map<String, String> stubs) {
        var config = new CompilerConfiguration();
        // Types resolved from loaded classes (not decompiled class files) carry their Class, which the
        // type checker asks for.
        config.getOptimizationOptions().put("asmResolving", false);
        var unit = new CompilationUnit(config);
        sources.forEach(p -> unit.addSource(p.toFile()));
        stubs.forEach((name, text) -> unit.addSource(name + ".stub", text));
        try {
            unit.compile(Phases.SEMANTIC_ANALYSIS);
        }
        catch( CompilationFailedException e ) {
            // the errors stay in unit's error collector
        }
        return unit;
    }

    /** Include, name and type resolution, as `nextflow lint` does, but with the lib classes known. */
    private void analyze() {
        var compiler = scriptParser.compiler();
        for( var source : new ArrayList<>(compiler.getSources().values()) )
            new ModuleResolver(compiler).resolve(source, uri -> compiler.createSourceUnit(new File(uri)));
        for( var source : compiler.getSources().values() ) {
            syntaxErrorCounts.putIfAbsent(source.getSource().getURI(), errorCount(source));
            var includeResolver = new ResolveIncludeVisitor(source, compiler);
            includeResolver.visit();
            for( var error : includeResolver.getErrors() )
                source.getErrorCollector().addErrorAndContinue(error);
            new ScriptResolveVisitor(source, compiler.compilationUnit(), Types.DEFAULT_SCRIPT_IMPORTS, libClasses).visit();
            if( source.getErrorCollector().hasErrors() )
                continue;
            try {
                new TypeCheckingVisitor(source, false).visit();
            }
            catch( RuntimeException | org.codehaus.groovy.GroovyBugError e ) {
                // nf-lang 25.04.0's type checker is young: one crash must not hide the other files' errors.
                System.err.println(display(source) + ": warning: type checking skipped (" + e + ")");
            }
        }
        var configCompiler = configParser.compiler();
        for( var source : configCompiler.getSources().values() ) {
            var includeResolver = new nextflow.config.control.ResolveIncludeVisitor(source);
            includeResolver.visit();
            for( var error : includeResolver.getErrors() )
                source.getErrorCollector().addErrorAndContinue(error);
            int before = errorCount(source);
            new ConfigResolveVisitor(source, configCompiler.compilationUnit(), Types.DEFAULT_CONFIG_IMPORTS).visit();
            if( source.getAST() instanceof ConfigNode cn )
                markProcessInputReferences(source, cn, before);
        }
    }

    /**
     * A dynamic process directive in a config file (`withName: X { storeDir = { "${input.id}" } }`, or a
     * closure inside a map such as publishDir's `path`) may name the process's inputs, which are not known
     * when the config is checked. nf-lang 25.04.0 reports them as "not defined"; Nextflow 25.10 and later
     * (the versions that make the strict syntax the default) accept them: so this checker does too.
     */
    private void markProcessInputReferences(SourceUnit source, ConfigNode config, int firstNewError) {
        var positions = new ProcessInputReferences();
        positions.visit(config);
        var list = source.getErrorCollector().getErrors();
        for( int i = firstNewError; list != null && i < list.size(); i++ ) {
            if( list.get(i) instanceof SyntaxErrorMessage sem ) {
                var cause = sem.getCause();
                var key = cause.getStartLine() + ":" + cause.getStartColumn();
                if( cause.getOriginalMessage().endsWith("` is not defined") && positions.found.contains(key) )
                    acceptedByNewerNextflow.add(sem);
            }
        }
    }

    /** Positions (line:col) of the variables read inside closures of the `process` config scope. */
    private static class ProcessInputReferences extends ConfigVisitorSupport {
        final Set<String> found = new HashSet<>();
        private final List<String> scopes = new ArrayList<>();
        private boolean inProcessScope = false;
        private int closureDepth = 0;

        @Override
        protected SourceUnit getSourceUnit() {
            return null;
        }

        @Override
        public void visitConfigBlock(ConfigBlockNode node) {
            // Selector blocks (`withName:`, `withLabel:`) have a kind and open no new scope.
            boolean newScope = node.kind == null;
            if( newScope )
                scopes.add(node.name);
            super.visitConfigBlock(node);
            if( newScope )
                scopes.remove(scopes.size() - 1);
        }

        @Override
        public void visitConfigAssign(ConfigAssignNode node) {
            var names = new ArrayList<>(scopes);
            names.addAll(node.names.subList(0, node.names.size() - 1));
            if( names.size() >= 2 && names.get(0).equals("profiles") )
                names = new ArrayList<>(names.subList(2, names.size()));
            inProcessScope = !names.isEmpty() && names.get(0).equals("process");
            super.visitConfigAssign(node);
            inProcessScope = false;
        }

        @Override
        public void visitClosureExpression(ClosureExpression node) {
            closureDepth += 1;
            super.visitClosureExpression(node);
            closureDepth -= 1;
        }

        @Override
        public void visitVariableExpression(VariableExpression node) {
            if( inProcessScope && closureDepth > 0 )
                found.add(node.getLineNumber() + ":" + node.getColumnNumber());
        }
    }

    private static int errorCount(SourceUnit source) {
        var list = source.getErrorCollector().getErrors();
        return list == null ? 0 : list.size();
    }

    private int report() {
        var sources = new TreeSet<SourceUnit>(Comparator.comparing((SourceUnit s) -> s.getSource().getURI()));
        sources.addAll(scriptParser.compiler().getSources().values());
        sources.addAll(configParser.compiler().getSources().values());
        int filesWithErrors = 0;
        for( var source : sources ) {
            files += 1;
            var name = display(source);
            if( listFiles )
                System.err.println("strict_syntax: checked " + name);
            var collector = source.getErrorCollector();
            List<? extends Message> messages = collector.getErrors() == null ? List.of() : collector.getErrors();
            int syntaxCount = syntaxErrorCounts.getOrDefault(source.getSource().getURI(), messages.size());
            int reported = 0;
            for( int i = 0; i < messages.size(); i++ ) {
                if( acceptedByNewerNextflow.contains(messages.get(i)) )
                    continue;
                reported += 1;
                System.out.println(name + ":" + describe(messages.get(i)) + (i >= syntaxCount ? " [semantic]" : ""));
                errors += 1;
            }
            if( reported > 0 )
                filesWithErrors += 1;
            if( collector.getWarnings() != null ) {
                for( WarningMessage warning : collector.getWarnings() ) {
                    // Paranoid warnings announce what a later Nextflow deprecates: shown, not counted.
                    boolean future = warning instanceof ParanoidWarning;
                    if( !future )
                        warnings += 1;
                    if( !showWarnings )
                        continue;
                    var context = warning.getContext();
                    var where = context == null ? "0:0" : context.getStartLine() + ":" + context.getStartColumn();
                    System.err.println(name + ":" + where + (future ? ": warning (future): " : ": warning: ") + warning.getMessage());
                }
            }
        }
        System.err.printf("strict_syntax: %d error(s) in %d of %d file(s), %d warning(s)%s%s%n", errors, filesWithErrors, files,
            warnings, warnings > 0 && !showWarnings ? " (--warnings lists them)" : "",
            acceptedByNewerNextflow.isEmpty() ? "" : " (" + acceptedByNewerNextflow.size() + " process-input reference(s) in config closures accepted, as Nextflow 25.10+ does)");
        return errors == 0 ? 0 : 1;
    }

    private static String describe(Message message) {
        if( message instanceof SyntaxErrorMessage sem ) {
            var cause = sem.getCause();
            return cause.getStartLine() + ":" + cause.getStartColumn() + ": " + cause.getOriginalMessage();
        }
        if( message instanceof ExceptionMessage em )
            return "0:0: " + em.getCause();
        if( message instanceof SimpleMessage sm )
            return "0:0: " + sm.getMessage();
        return "0:0: " + message;
    }

    private String display(SourceUnit source) {
        var uri = source.getSource().getURI();
        if( !"file".equals(uri.getScheme()) )
            return source.getName();
        var path = Path.of(uri);
        return path.startsWith(displayBase) ? displayBase.relativize(path).toString() : path.toString();
    }
}
