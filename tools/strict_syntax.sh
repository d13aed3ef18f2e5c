#!/usr/bin/env bash
# Check the pipeline's scripts and config files against Nextflow's strict syntax (nf-lang's parser,
# the one `nextflow lint` uses and Nextflow 26.04 enforces), whatever Nextflow version runs it.
#
#   tools/strict_syntax.sh [--syntax-only] [--warnings] [--list] [PIPELINE_DIR_OR_FILE...]   (default: this checkout)
#
# Prints `file:line:col: message` per error and exits 1 on any (2: bad usage, 3: JARs not obtained).
# The first run fetches io.nextflow:nf-lang:25.04.0 and its dependencies from Maven Central into
# tools/strict-lib/ (tools/strict-syntax-pom.xml); STRICT_SYNTAX_LIB points at another folder.
set -euo pipefail
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="${STRICT_SYNTAX_LIB:-$tools/strict-lib}"
pom="$tools/strict-syntax-pom.xml"

# The stamp is written only after a complete copy, and is older than the pom when the pom changed.
if [[ ! -f "$lib/.fetched" || "$pom" -nt "$lib/.fetched" ]]; then
  command -v mvn >/dev/null || { echo "strict_syntax: Maven (mvn) is needed to fetch nf-lang into $lib" >&2; exit 3; }
  echo "strict_syntax: fetching io.nextflow:nf-lang from Maven Central into $lib" >&2
  rm -rf "$lib.partial"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib.partial" >&2 \
    || { rm -rf "$lib.partial"; echo "strict_syntax: could not fetch nf-lang (see above)" >&2; exit 3; }
  rm -rf "$lib" && mv "$lib.partial" "$lib" && touch "$lib/.fetched"
fi
# The checker is compiled once into the same git-ignored folder, again whenever its source changes.
classes="$lib/classes"
if [[ ! -f "$classes/StrictSyntax.class" || "$tools/StrictSyntax.java" -nt "$classes/StrictSyntax.class" ]]; then
  rm -rf "$classes.partial" && mkdir -p "$classes.partial"
  javac -nowarn -cp "$lib/*" -d "$classes.partial" "$tools/StrictSyntax.java" >&2
  rm -rf "$classes" && mv "$classes.partial" "$classes"
fi
# Without a path, check the checkout this script belongs to, wherever it is called from.
has_path=0
for arg in "$@"; do [[ "$arg" == -* ]] || has_path=1; done
(( has_path )) || set -- "$@" "$(dirname "$tools")"
exec java -XX:TieredStopAtLevel=1 -cp "$classes:$lib/*" StrictSyntax "$@"
