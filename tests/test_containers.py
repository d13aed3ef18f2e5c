"""The images' pins and shape, fast (no build): digests pinned and explained by the lock, Dockerfiles on
their parent, and the GPU flags podman gets (a stand-in `podman` records the real `podman run` lines)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TEST_WEIGHTS, run_nextflow

spec = importlib.util.spec_from_file_location("czb_pins", ROOT / "containers" / "pins.py")
pins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pins)

PINNED = re.compile(r"[\w.-]+:[\w.+-]+@sha256:[0-9a-f]{64}")


def all_refs() -> dict:
    return {"light image (nextflow.config)": pins.light_ref(),
            **{f"conf/models.yaml {name}": ref for name, ref in pins.registry_refs().items()}}


def test_every_registry_image_and_the_light_image_is_pinned_by_digest():
    unpinned = {where: ref for where, ref in all_refs().items() if not PINNED.fullmatch(ref)}
    assert not unpinned, f"images without name:tag@sha256: pins (run containers/build.sh --push --pin): {unpinned}"


def test_the_pins_are_the_digests_the_committed_lock_recorded():
    lock = json.loads(pins.COMMITTED_LOCK.read_text())
    for where, ref in all_refs().items():
        name, tag, digest = pins.split_ref(ref)
        entry = lock["images"].get(name)
        assert entry, f"{where}: {name} is not in {pins.COMMITTED_LOCK.name}"
        assert (entry["tag"], entry["digest"]) == (tag, digest), where
    # The lock also records the parent every model image was built on.
    assert lock["images"][pins.PARENT]["tag"] == pins.torch_tag() and lock["images"][pins.PARENT]["digest"]


def test_base_and_parent_start_from_the_official_python_image_and_models_from_the_parent():
    for image in pins.images():
        text = (ROOT / "containers" / image["name"] / "Dockerfile").read_text()
        if image["parent"]:
            assert re.search(r"^ARG TORCH_IMAGE=\S+/torch:\S+\nFROM \$\{TORCH_IMAGE\}$", text, flags=re.M), image
        else:
            assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.11-slim-bookworm\nFROM \$\{BASE_IMAGE\}$", text, flags=re.M), image
        # Each image carries this commit's czbenchmarks package (the parent carries none).
        assert ("COPY src /opt/czbenchmarks/src" in text) == (image["name"] != pins.PARENT), image


def package_names(requirements: Path) -> set:
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    return {re.split(r"[=<>\[]", line)[0].lower().replace("_", "-") for line in lines if line}


def test_model_images_add_only_their_own_pins_to_the_parent():
    parent = package_names(ROOT / "containers" / pins.PARENT / "requirements.txt")
    assert {"torch", "numpy", "anndata"} <= parent
    models = [image["name"] for image in pins.images() if image["parent"]]
    assert set(models) == {"geneformer", "scgenept", "scgpt", "scvi", "uce"}
    for name in models:
        repeated = package_names(ROOT / "containers" / name / "requirements.txt") & parent
        assert not repeated, f"containers/{name}/requirements.txt repeats the parent's pins {sorted(repeated)}"


def test_split_ref_rejects_refs_without_a_tag_or_with_a_bad_digest():
    assert pins.split_ref("scvi:0.1.0@sha256:" + "a" * 64) == ("scvi", "0.1.0", "sha256:" + "a" * 64)
    with pytest.raises(ValueError, match="has no tag"):
        pins.split_ref("scvi")
    with pytest.raises(ValueError, match="is not a sha256 digest"):
        pins.split_ref("scvi:0.1.0@sha256:abc")


FAKE_PODMAN = """#!/usr/bin/env bash
# Records each podman call, then runs the task's command on the host (the image is not needed for -stub-run).
echo "$*" >> "$PODMAN_CALLS"
[[ "$1" == run ]] || exit 0
while [[ $# -gt 0 && "$1" != /bin/bash ]]; do shift; done
exec "$@"
"""


@pytest.mark.e2e
def test_podman_gives_only_gpu_tasks_the_cdi_device_under_the_gpu_profile(tmp_path):
    """`-profile podman,gpu`: RUN_MODEL's `podman run` carries --device nvidia.com/gpu=all, no CPU task does."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "podman").write_text(FAKE_PODMAN)
    (fake / "podman").chmod(0o755)
    calls = tmp_path / "podman_calls.txt"
    limits = tmp_path / "limits.config"
    limits.write_text("process.resourceLimits = [cpus: 2, memory: 6.GB, time: 1.h]\n")
    run = run_nextflow(
        tmp_path, "-profile", "podman,gpu", "-stub-run", "-c", str(limits),
        "--input", str(ROOT / "assets" / "samplesheet_test.csv"),
        "--weights_mirror", str(TEST_WEIGHTS), "--weights_cache", str(tmp_path / "wc"),
        env={"PATH": f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
             "PODMAN_CALLS": str(calls)},
    )
    assert run.returncode == 0, run.explain()
    runs = [line for line in calls.read_text().splitlines() if line.startswith("run ")]
    model_runs = [line for line in runs if "/scvi:" in line]
    other_runs = [line for line in runs if "/scvi:" not in line]
    assert model_runs and other_runs, runs
    assert all("--device nvidia.com/gpu=all" in line for line in model_runs), model_runs
    assert not any("nvidia.com/gpu" in line or "--gpus" in line for line in other_runs), other_runs
    # The registry's pins reach `podman run` as written: the tasks run the digest, not a moving tag.
    assert all(re.search(r"@sha256:[0-9a-f]{64} ", line) for line in runs), runs
