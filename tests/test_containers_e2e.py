"""End to end inside the real images: `-profile test,podman` with every model, each task in its pinned image.

The images come from containers/build.sh (.ci/run builds them: the light image, the torch parent and
the five model images) and are pulled by digest from the local registry on 127.0.0.1 into an empty
podman store, so nothing built on the host stands in for them. The pins are the fresh build's lock
(containers/.cache/images.lock.json): fresh builds are not bit-reproducible, so the committed pins
(conf/models.yaml, nextflow.config) name the images built where they were committed; this test pins
the run from the lock, checks that the registry serves exactly those digests and that every task of
the trace ran in the image the registry names, then compares the metrics with the host run.

Skipped (with the reason) where podman, skopeo, the lock or the registry are missing, unless
CZB_REQUIRE_CONTAINERS=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ALL_MODELS, ROOT, run_nextflow

pytestmark = pytest.mark.e2e

spec = importlib.util.spec_from_file_location("czb_pins", ROOT / "containers" / "pins.py")
pins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pins)

LOCK = Path(os.environ.get("CZB_IMAGES_LOCK", ROOT / "containers" / ".cache" / "images.lock.json"))
CONTAINERS_CONF = ROOT / "tools" / "containers.conf"
#: Metric agreement between the images (torch 2.7.1) and the host venv (torch 2.13), see docs/containers.md:
#: continuous metrics within 1e-3 (relative or absolute); label prediction scores classifier decisions on
#: 700 cells, where float noise in an embedding flips a few cells (1/700 = 0.0014 each): 0.01 absolute.
REL_TOL, ABS_TOL = 1e-3, 1e-3
LABEL_PREDICTION_ABS_TOL = 0.01


def unavailable(reason: str) -> None:
    if os.environ.get("CZB_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"CZB_REQUIRE_CONTAINERS=1 but {reason}")
    pytest.skip(reason)


def wait_for_the_build() -> None:
    """Under .ci/run the images build beside the test suite: wait for its status file (ok, or why not)."""
    status = os.environ.get("CZB_IMAGES_STATUS")
    if not status:
        return
    deadline = time.monotonic() + 3600
    while not Path(status).exists():
        if time.monotonic() > deadline:
            unavailable(f"the image build did not finish within an hour ({status})")
        time.sleep(10)
    text = Path(status).read_text()
    if text.startswith("skip: "):  # .ci/run found too little disk to build: not a failure of the images
        pytest.skip(text[len("skip: "):].strip())
    if text.strip() != "ok":
        unavailable(text[-3000:])


@pytest.fixture(scope="module")
def lock() -> dict:
    wait_for_the_build()
    for tool in ("podman", "skopeo"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (bash tools/install_podman.sh)")
    if not LOCK.exists():
        unavailable(f"no image lock {LOCK}: build the images first (containers/build.sh --push --registry 127.0.0.1:5000/czbenchmarks-nf)")
    data = json.loads(LOCK.read_text())
    registry = data.get("registry", "")
    host = registry.split("/")[0]
    if not host.startswith(("127.0.0.1", "localhost")):
        unavailable(f"{LOCK} names registry {registry}, not a local one")
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=5)
    except OSError as err:
        unavailable(f"registry {host} is not reachable ({err}): containers/registry.sh start")
    missing = [image["name"] for image in pins.images() if not data["images"].get(image["name"], {}).get("digest")]
    if missing:
        unavailable(f"{LOCK} has no pushed digest for {missing}")
    return data


def test_the_registry_serves_the_digests_the_build_pushed(lock):
    """The build's check, repeated: what the lock pins is what the registry serves under each tag."""
    registry = lock["registry"]
    for name, entry in sorted(lock["images"].items()):
        proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                               f"docker://{registry}/{name}:{entry['tag']}"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == entry["digest"], f"{name}: lock {entry['digest']}, registry {proc.stdout.strip()}"


@pytest.fixture(scope="module")
def container_run(lock, tmp_path_factory):
    launch = tmp_path_factory.mktemp("containers_e2e")
    registry = lock["registry"]
    digests = {name: entry["digest"] for name, entry in lock["images"].items()}
    # The registry pinned from the fresh build (the committed file pins the images built where it was committed).
    models_yaml = launch / "models.yaml"
    models_yaml.write_text(pins.REGISTRY_LINE.sub(
        lambda m: m["head"] + pins.pinned(m["ref"], digests[pins.split_ref(m["ref"])[0]]) + m["tail"],
        pins.MODELS_YAML.read_text()))
    light = f"{registry}/{pins.pinned(pins.light_ref(), digests[pins.split_ref(pins.light_ref())[0]])}"
    config = launch / "containers.config"
    config.write_text(f'process.container = "{light}"\n')
    # The local registry speaks plain HTTP; an empty store makes every task pull its image by digest.
    registries = launch / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{registry.split("/")[0]}"\ninsecure = true\n')
    storage = launch / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{launch / "store"}"\nrunroot = "{launch / "run"}"\n')
    env = {"CONTAINERS_CONF": str(CONTAINERS_CONF), "CONTAINERS_REGISTRIES_CONF": str(registries),
           "CONTAINERS_STORAGE_CONF": str(storage)}
    # Pull each image once, by digest, before the run: tasks starting side by side would each unpack
    # the shared torch layers (several GB apiece) while none has finished.
    pull_env = {**os.environ, **env}
    for ref in [light, *{f"{registry}/{pins.pinned(ref, digests[pins.split_ref(ref)[0]])}" for ref in pins.registry_refs().values()}]:
        pulled = subprocess.run(["podman", "pull", "-q", ref], env=pull_env, capture_output=True, text=True, timeout=1800)
        assert pulled.returncode == 0, f"podman pull {ref}: {pulled.stderr[-2000:]}"
    run = run_nextflow(launch, "-profile", "test,podman", "--models", ALL_MODELS, "-c", str(config),
                       "--registry", str(models_yaml), "--container_registry", registry,
                       "--weights_cache", str(launch / "weights_cache"), timeout=3600, env=env)
    yield run, registry, digests, light
    # The pulled layers (several GB) go; the run's records stay for the tests above.
    subprocess.run(["podman", "rmi", "--all", "--force"], env={**os.environ, **env}, capture_output=True, timeout=600)
    shutil.rmtree(launch / "store", ignore_errors=True)


def test_every_task_ran_in_the_image_the_registry_names(container_run):
    run, registry, digests, light = container_run
    assert run.returncode == 0, run.explain()
    trace = run.trace()
    assert trace and all(row["status"] == "COMPLETED" for row in trace), [r for r in trace if r["status"] != "COMPLETED"]
    registry_refs = pins.registry_refs()
    ran_models = set()
    for row in trace:
        if row["process"].endswith(":RUN_MODEL"):
            model = next(m for m in ALL_MODELS.split(",") if f":{m}" in row["tag"] or row["tag"].split(":")[1:2] == [m])
            name = pins.split_ref(registry_refs[model])[0]
            expected = f"{registry}/{pins.pinned(registry_refs[model], digests[name])}"
            ran_models.add(model)
        else:
            expected = light
        assert row["container"] == expected, (row["process"], row["tag"], row["container"])
    assert ran_models == set(ALL_MODELS.split(","))


def metric_key(row: dict) -> tuple:
    return (row["dataset"], row["model"], row["variant"], row["task"], row["metric"],
            json.dumps(row["metric_params"], sort_keys=True))


def moved_metrics(host_rows: list, inside_rows: list) -> list:
    """(cell, host value, container value) for every metric outside the tolerances above."""
    inside = {metric_key(r): r["value"] for r in inside_rows}
    host = {metric_key(r): r["value"] for r in host_rows}
    assert inside.keys() == host.keys(), sorted(set(inside) ^ set(host))[:10]
    moved = []
    for key, value in host.items():
        other = inside[key]
        if value is None or other is None:
            assert value is other, key
            continue
        abs_tol = LABEL_PREDICTION_ABS_TOL if key[3] == "label_prediction" else ABS_TOL
        if not math.isclose(value, other, rel_tol=REL_TOL, abs_tol=abs_tol):
            moved.append((key[:5], value, other))
    return moved


def test_metrics_agree_with_the_host_run(container_run, all_models_run):
    """Same code, same seed, same tiny checkpoints: only the images' libraries (torch 2.7.1 vs the venv's) differ."""
    run = container_run[0]
    assert run.returncode == 0, run.explain()
    moved = moved_metrics(all_models_run.results()["results"], run.results()["results"])
    deltas = LOCK.parent / "container_metric_deltas.json"
    deltas.write_text(json.dumps([{"cell": list(k), "host": h, "container": c} for k, h, c in moved], indent=1))
    assert not moved, f"{len(moved)} metrics moved beyond the tolerances (listed in {deltas}): {moved[:8]}"
