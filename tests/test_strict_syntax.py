"""Nextflow's strict syntax (default from Nextflow 26.04) on the pipeline's scripts and config files.

tools/strict_syntax.sh parses them with nf-lang, the parser of `nextflow lint`, fetched from Maven
Central on first use; the pipeline itself still runs on Nextflow 24.10.8.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT

CHECKER = ROOT / "tools" / "strict_syntax.sh"
# Exit status of the checker when Maven could not fetch nf-lang (see the script).
JARS_NOT_OBTAINED = 3


def run_checker(*args: str) -> subprocess.CompletedProcess:
    """Run the checker; its first run fetches the JARs (about 10 s), later runs take a few seconds."""
    return subprocess.run(["bash", str(CHECKER), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def checker() -> None:
    """The checker with its JARs in place: a skip outside CI when they cannot be had, a failure in CI."""
    missing = [tool for tool in ("java", "javac") if shutil.which(tool) is None]
    proc = None if missing else run_checker("--help")
    if proc is not None and proc.returncode == 0:
        return
    reason = (f"{', '.join(missing)} not installed" if missing else
              f"tools/strict_syntax.sh could not start (exit {proc.returncode}): {proc.stderr[-2000:]}")
    if os.environ.get("CI") or (proc is not None and proc.returncode != JARS_NOT_OBTAINED):
        pytest.fail(reason)
    pytest.skip(f"nf-lang JARs not obtained, strict syntax not checked: {reason}")


def error_lines(proc: subprocess.CompletedProcess) -> List[str]:
    return [line for line in proc.stdout.splitlines() if re.match(r"^[^:]+:\d+:\d+: ", line)]


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_pipeline_passes_strict_syntax(checker):
    proc = run_checker(str(ROOT))
    assert proc.returncode == 0, "strict-syntax errors (file:line:col):\n" + proc.stdout + proc.stderr[-3000:]
    # All 22-odd scripts and configs were read, not none.
    checked = re.search(r"in \d+ of (\d+) file", proc.stderr)
    assert checked and int(checked.group(1)) >= 5, proc.stderr


def test_checker_reports_each_violation_with_its_position(checker, tmp_path):
    write(tmp_path, "main.nf", (
        "include { HELLO } from './modules/local/hello'\n"
        "\n"
        "println 'a statement at the top level'\n"
        "\n"
        "workflow {\n"
        "    HELLO(channel.of(1))\n"
        "}\n"
    ))
    write(tmp_path, "modules/local/hello/main.nf", (
        "process HELLO {\n"
        "    input:\n"
        "    val x\n"
        "\n"
        "    script:\n"
        "    def shout = { String s -> s.toUpperCase() }\n"
        "    \"echo ${shout('hi')} ${undefined_name}\"\n"
        "}\n"
    ))
    write(tmp_path, "nextflow.config", "def x = 1\nparams.a = 2\n")
    write(tmp_path, "conf/base.config", "process {\n    cpus = 2\n}\n")

    proc = run_checker(str(tmp_path))
    lines = error_lines(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(line.startswith(str(Path(tmp_path, "main.nf")) + ":3:1: ") and "Statements cannot be mixed" in line
               for line in lines), lines
    assert any(line.startswith(str(Path(tmp_path, "nextflow.config")) + ":1:1: ") and "Variable declarations" in line
               for line in lines), lines
    hello = str(Path(tmp_path, "modules/local/hello/main.nf"))
    # A closure held in a local variable is not a function: the strict syntax rejects `shout(...)`.
    assert any(line.startswith(hello + ":7:") and "`shout` is not defined" in line for line in lines), lines
    assert any(line.startswith(hello + ":7:") and "`undefined_name` is not defined" in line for line in lines), lines
    assert not any("conf/base.config" in line for line in lines), lines

    syntax_only = run_checker("--syntax-only", str(tmp_path))
    assert syntax_only.returncode == 1
    assert len(error_lines(syntax_only)) == 2, syntax_only.stdout  # the two syntax errors, no name checks


def test_checker_accepts_what_nextflow_accepts(checker, tmp_path):
    """lib/ classes, Nextflow's bundled libraries and task inputs in config closures are no errors."""
    write(tmp_path, "lib/Greeting.groovy", (
        "import nextflow.exception.AbortOperationException\n"
        "class Greeting {\n"
        "    static Map of(String name) {\n"
        "        if (!name) throw new AbortOperationException('no name')\n"
        "        return [text: \"hello ${name}\"]\n"
        "    }\n"
        "}\n"
    ))
    write(tmp_path, "main.nf", (
        "workflow {\n"
        "    def greeting = Greeting.of('world')\n"
        "    def text = groovy.json.JsonOutput.toJson(greeting)\n"
        "    def yaml = new org.yaml.snakeyaml.Yaml().load('a: 1')\n"
        "    def quote = { String s -> \"'${s}'\" }\n"
        "    channel.of(text, yaml).map { v -> quote.call(v.toString()) }.view()\n"
        "}\n"
    ))
    write(tmp_path, "nextflow.config", (
        "params.outdir = 'results'\n"
        "process {\n"
        "    withName: 'HELLO' {\n"
        "        storeDir   = { \"${params.outdir}/${request.model}\" }\n"
        "        publishDir = [path: { \"${params.outdir}/${dataset.id}\" }, mode: 'copy']\n"
        "    }\n"
        "}\n"
    ))
    proc = run_checker(str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The same reference outside a process directive is still an error.
    write(tmp_path, "conf/other.config", "params.label = \"${request.model}\"\n")
    proc = run_checker(str(tmp_path))
    assert proc.returncode == 1 and "conf/other.config:1:" in proc.stdout, proc.stdout + proc.stderr
