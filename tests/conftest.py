"""Shared fixtures: paths, the test data, and a runner for real `nextflow run`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
TEST_WEIGHTS = ROOT / "assets" / "test" / "weights"


def nextflow_binary() -> str:
    """NXF_BIN, else the project's launcher when its JARs exist, else `nextflow` on PATH."""
    if os.environ.get("NXF_BIN"):
        return os.environ["NXF_BIN"]
    if list((ROOT / "tools" / "nextflow-lib").glob("nextflow-[0-9]*.jar")):
        return str(ROOT / "tools" / "nextflow")
    found = shutil.which("nextflow")
    if not found:
        pytest.fail("no Nextflow: run tools/setup.sh (or set NXF_BIN)")
    return found


class NextflowRun:
    """Result of one `nextflow run`: exit code, logs, and helpers to read what it published."""

    def __init__(self, proc: subprocess.CompletedProcess, launch_dir: Path, outdir: Path) -> None:
        self.proc = proc
        self.launch_dir = launch_dir
        self.outdir = outdir
        log = launch_dir / ".nextflow.log"
        self.log = log.read_text() if log.exists() else ""

    @property
    def returncode(self) -> int:
        return self.proc.returncode

    def explain(self) -> str:
        return f"stdout:\n{self.proc.stdout[-6000:]}\nstderr:\n{self.proc.stderr[-4000:]}\nlog tail:\n{self.log[-6000:]}"

    def trace(self) -> List[Dict[str, str]]:
        with open(self.outdir / "pipeline_info" / "trace.txt") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))

    def results(self) -> dict:
        return json.loads((self.outdir / "benchmark_results.json").read_text())


@pytest.fixture(scope="session")
def nextflow_bin() -> str:
    return nextflow_binary()


def run_nextflow(launch_dir: Path, *args: str, timeout: int = 1500, env: Dict[str, str] | None = None,
                 main: Path = ROOT / "main.nf") -> NextflowRun:
    """`nextflow run <main> ...` (this checkout's main.nf by default) in ``launch_dir``, offline, no plugins."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    run_env = dict(os.environ)
    run_env.update(
        NXF_HOME=str(launch_dir / ".nxf-home"),
        NXF_OFFLINE="true",
        NXF_PLUGINS_DEFAULT="false",
        NXF_ANSI_LOG="false",
        NXF_OPTS="-Xms256m -Xmx1g",
    )
    run_env.pop("TOWER_ACCESS_TOKEN", None)
    # Tasks run the bin/ scripts with the `python3` on PATH: make it this interpreter's.
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    run_env.update(env or {})
    outdir = launch_dir / "results"
    cmd = [nextflow_binary(), "run", str(main), "--outdir", str(outdir), *args]
    proc = subprocess.run(cmd, cwd=launch_dir, env=run_env, capture_output=True, text=True, timeout=timeout)
    return NextflowRun(proc, launch_dir, outdir)


@pytest.fixture(scope="session")
def test_profile_run(tmp_path_factory) -> NextflowRun:
    """One real `nextflow run main.nf -profile test`, shared by the end-to-end tests that only read it."""
    launch = tmp_path_factory.mktemp("test_profile")
    run = run_nextflow(launch, "-profile", "test", "--weights_cache", str(launch / "weights_cache"))
    assert run.returncode == 0, run.explain()
    return run


#: Every registered model: one shared all-models run serves the models e2e and the SLURM comparison.
ALL_MODELS = "scvi,geneformer,scgpt,uce,scgenept"


@pytest.fixture(scope="session")
def all_models_run(tmp_path_factory) -> NextflowRun:
    """One real `nextflow run main.nf -profile test --models <every model>` (local executor), shared."""
    launch = tmp_path_factory.mktemp("all_models")
    run = run_nextflow(launch, "-profile", "test", "--models", ALL_MODELS,
                       "--weights_cache", str(launch / "weights_cache"), timeout=3000)
    assert run.returncode == 0, run.explain()
    return run


def pytest_collection_modifyitems(config, items):
    """Run the container tests last: in CI the images build in the background while the rest runs."""
    items.sort(key=lambda item: item.path.name.startswith("test_containers_e2e"))
