"""-profile slurm against a real one-node SLURM (tests/slurm_cluster.py), jobs that die mid-run included.

One cluster serves the whole module. The end-to-end runs:
- `-profile test,slurm,gpu -stub-run`: GPU requests reach SLURM for the model jobs only, on their partition;
- `-profile test,slurm` with every model: every task is a SLURM job, results equal a local `-profile test` run;
- faults: a model job cancelled with scancel and an EVALUATE process killed with SIGKILL are retried;
  the Nextflow head killed with SIGKILL mid-run is finished by `-resume` from its cache.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import ALL_MODELS, NextflowRun, run_nextflow
from slurm_cluster import GPU_PARTITION, PARTITION, SlurmCluster, missing_binaries, wait_for
from test_config import flat_config

TESTS = Path(__file__).resolve().parent
FAST_POLLING = TESTS / "slurm_test.config"
SLOW_FIRST_MODEL_ATTEMPT = TESTS / "slurm_faults.config"
MODELS = "scvi,geneformer,scgpt,uce,scgenept"
FAULT_MODELS = "scvi"
RUN_TIMEOUT = 3600


# ---------------------------------------------------------------------------------------- config only
def test_slurm_profile_submits_every_task_to_slurm():
    lines = flat_config("test,slurm,gpu")
    assert "process.executor = 'slurm'" in lines, "the slurm profile must win over test's local executor"
    for setting in ("queueSize", "submitRateLimit", "pollInterval", "queueStatInterval", "exitReadTimeout"):
        assert any(line.startswith(f"executor.{setting} = ") for line in lines), setting
    # Queues stay unset unless given.
    assert "process.queue = null" in lines


def test_slurm_gpu_request_is_scoped_to_the_gpu_label_and_profile():
    lines = flat_config("slurm,gpu")
    gres = [line for line in lines if "--gres" in line]
    assert gres == ["process.'withLabel:^process_gpu$'.clusterOptions = "
                    "{ workflow.profile.tokenize(',').contains('gpu') ? '--gres=gpu:1' : null }"]
    # The label's resources from conf/base.config survive beside the SLURM additions.
    for kept in ("cpus", "memory", "time", "accelerator"):
        assert any(line.startswith(f"process.'withLabel:process_gpu'.{kept} = ") for line in lines), kept


# ---------------------------------------------------------------------------------------- real SLURM
@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """One real SLURM cluster for the session. Without SLURM the tests skip, except in CI (CI=true): there they fail."""
    missing = missing_binaries()
    problem = None
    if missing:
        problem = f"SLURM/munge not installed ({', '.join(missing)}): run tools/install_slurm.sh"
    elif os.geteuid() != 0:
        problem = "the throwaway SLURM cluster runs its daemons as root (SlurmUser=root)"
    if problem and os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=2)
    cluster.start()
    yield cluster
    cluster.stop()


def run_on_slurm(cluster: SlurmCluster, launch: Path, *args: str) -> NextflowRun:
    return run_nextflow(launch, "-profile", "test,slurm", "-c", str(FAST_POLLING), "--weights_cache",
                        str(launch / "weights_cache"), *args, env=cluster.env, timeout=RUN_TIMEOUT)


def assert_every_task_was_a_slurm_job(run: NextflowRun, cluster: SlurmCluster) -> Dict[str, Dict[str, str]]:
    """Each task that ran has a SLURM job id; SLURM's completion log holds that job under Nextflow's job name."""
    records = cluster.completed_jobs()
    ran = [row for row in run.trace() if row["status"] != "CACHED"]
    assert ran, "no task ran"
    for row in ran:
        job = records.get(row["native_id"])
        assert job is not None, f"{row['name']}: job {row['native_id']!r} not in SLURM's records"
        # Nextflow names jobs nf-<PROCESS>_(<tag>), with characters SLURM dislikes replaced.
        assert job["Name"].startswith("nf-") and row["process"].split(":")[-1] in job["Name"], (row, job)
        if row["status"] == "COMPLETED":
            assert job["JobState"] == "COMPLETED", (row, job)
    return records


def metric_values(results: dict) -> Dict[Tuple, float]:
    values = {}
    for row in results["results"]:
        key = (row["dataset"], tuple(row["datasets"]), row["model"], row["variant"], row["task"], row["metric"],
               json.dumps(row["metric_params"], sort_keys=True))
        assert key not in values, f"duplicate result row {key}"
        values[key] = row["value"]
    return values


def assert_same_metrics(got: dict, expected: dict, models: List[str] | None = None) -> int:
    """Equal metric rows (within 1e-6), restricted to ``models`` and the baselines when given."""
    want = metric_values(expected)
    if models is not None:
        want = {key: value for key, value in want.items() if key[2] in set(models) | {"baseline"}}
    have = metric_values(got)
    assert set(have) == set(want), {"missing": sorted(set(want) - set(have))[:10],
                                    "extra": sorted(set(have) - set(want))[:10]}
    for key, value in want.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert have[key] is None or math.isnan(have[key]), key
        else:
            assert have[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    return len(want)


@pytest.fixture(scope="module")
def local_run(all_models_run) -> NextflowRun:
    """The reference: the same models with the local executor (the session's shared all-models run)."""
    assert MODELS == ALL_MODELS
    return all_models_run


@pytest.mark.e2e
def test_gpu_jobs_ask_slurm_for_a_gpu_on_the_gpu_partition(slurm, tmp_path):
    run = run_nextflow(tmp_path, "-profile", "test,slurm,gpu", "-stub-run", "-c", str(FAST_POLLING),
                       "--slurm_queue", PARTITION, "--slurm_queue_gpu", GPU_PARTITION,
                       "--weights_cache", str(tmp_path / "weights_cache"), env=slurm.env, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.explain() + slurm.logs()
    assert_every_task_was_a_slurm_job(run, slurm)
    gpu_jobs = 0
    for row in run.trace():
        job = slurm.job_details(row["native_id"])
        if row["process"].endswith(":RUN_MODEL"):
            gpu_jobs += 1
            assert (job.get("Partition"), job.get("TresPerNode")) == (GPU_PARTITION, "gres:gpu:1"), row["name"]
            # One GPU request in the job script: `accelerator` adds none of its own on SLURM.
            (script,) = (tmp_path / "work").glob(f"{row['hash']}*/.command.run")
            headers = [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]
            assert [line for line in headers if "gres" in line] == ["#SBATCH --gres=gpu:1"], headers
        else:
            assert job.get("Partition") == PARTITION and "gpu" not in job.get("TresPerNode", ""), (row["name"], job)
    assert gpu_jobs == 2  # scVI on the two PBMC sets (no task of the perturbation set scores embeddings)


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory) -> NextflowRun:
    launch = tmp_path_factory.mktemp("slurm_models")
    run = run_on_slurm(slurm, launch, "--models", MODELS)
    assert run.returncode == 0, run.explain() + slurm.logs()
    return run


@pytest.mark.e2e
def test_every_task_of_the_all_models_run_is_a_slurm_job(slurm_run, slurm):
    assert_every_task_was_a_slurm_job(slurm_run, slurm)
    trace = slurm_run.trace()
    assert {row["status"] for row in trace} == {"COMPLETED"}
    assert len({row["native_id"] for row in trace}) == len(trace)
    # Without -profile gpu no job asks for a GPU.
    assert not [row for row in trace if "gpu" in slurm.job_details(row["native_id"]).get("TresPerNode", "")]
    assert {row["process"].split(":")[-1] for row in trace} >= {"RUN_MODEL", "EVALUATE", "VALIDATE", "REPORT"}


@pytest.mark.e2e
def test_slurm_results_equal_the_local_run(slurm_run, local_run):
    compared = assert_same_metrics(slurm_run.results(), local_run.results())
    assert compared > 50
    assert slurm_run.results()["skipped"] == local_run.results()["skipped"]


def kill_a_running_job_process(cluster: SlurmCluster, process: str, script: str) -> Tuple[str, str]:
    """SIGKILL the ``script`` process of a running ``process`` job; returns (job id, job name)."""
    def target():
        for job in cluster.running_jobs():
            if f"{process}_" not in job["name"]:
                continue
            for pid in cluster.job_pids(job["id"]):
                if script in cluster.cmdline(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:  # finished meanwhile: try the next one
                        continue
                    return job["id"], job["name"]
        return None
    return wait_for(target, timeout=RUN_TIMEOUT, interval=0.2, what=f"a running {process} job")


def cancel_a_running_job(cluster: SlurmCluster, process: str) -> Tuple[str, str]:
    job = wait_for(lambda: next((j for j in cluster.running_jobs() if f"{process}_" in j["name"]), None),
                   timeout=RUN_TIMEOUT, interval=0.5, what=f"a running {process} job")
    cluster.client("scancel", job["id"])
    return job["id"], job["name"]


def in_background(function, *args) -> Tuple[threading.Thread, dict]:
    box: dict = {}

    def body():
        try:
            box["value"] = function(*args)
        except BaseException as error:  # re-raised by the test
            box["error"] = error

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def joined(thread: threading.Thread, box: dict):
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.e2e
def test_cancelled_and_killed_jobs_are_retried_not_lost(slurm, local_run, tmp_path):
    thread, box = in_background(run_on_slurm, slurm, tmp_path, "--models", FAULT_MODELS,
                                "-c", str(SLOW_FIRST_MODEL_ATTEMPT))
    cancelled_id, cancelled_name = cancel_a_running_job(slurm, "RUN_MODEL")
    killed_id, killed_name = kill_a_running_job_process(slurm, "EVALUATE", "czb_evaluate.py")
    run = joined(thread, box)
    assert run.returncode == 0, run.explain() + slurm.logs()
    records = assert_every_task_was_a_slurm_job(run, slurm)
    assert records[cancelled_id]["JobState"] == "CANCELLED", records[cancelled_id]
    trace = run.trace()
    by_job = {row["native_id"]: row for row in trace}
    faults = {"cancelled": (cancelled_id, "143"), "killed": (killed_id, "137")}
    for what, (job_id, exit_code) in faults.items():
        row = by_job[job_id]
        # The failed attempt is reported as such, and the same task ran again as a new job and finished.
        assert row["status"] == "FAILED" and row["exit"] == exit_code, (what, row)
        retries = [r for r in trace if r["name"] == row["name"] and r["native_id"] != job_id]
        assert [r["status"] for r in retries] == ["COMPLETED"], (what, retries)
    print(f"\nSLURM faults: cancelled {cancelled_name} (job {cancelled_id}), SIGKILLed the process of "
          f"{killed_name} (job {killed_id}); retried {sum(r['status'] == 'FAILED' for r in trace)} tasks")
    compared = assert_same_metrics(run.results(), local_run.results(), models=FAULT_MODELS.split(","))
    assert compared > 10


def nextflow_head_pid(launch: Path) -> int | None:
    """The Nextflow JVM that runs in ``launch``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (b"nextflow.cli.Launcher" in (entry / "cmdline").read_bytes()
                    and Path(os.readlink(entry / "cwd")) == launch):
                return int(entry.name)
        except OSError:
            continue
    return None


def completed_tasks(launch: Path) -> List[str]:
    """Names of the tasks Nextflow has seen finish, from its log."""
    log = launch / ".nextflow.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"Task completed > TaskHandler\[.*?name: ([^;]+); status: COMPLETED; exit: 0;", text)


@pytest.mark.e2e
def test_a_killed_head_resumes_from_its_cache(slurm, local_run, tmp_path):
    thread, box = in_background(run_on_slurm, slurm, tmp_path, "--models", FAULT_MODELS)
    # Mid-run: validation, weights, baselines and some model and metric jobs are done.
    wait_for(lambda: len(completed_tasks(tmp_path)) >= 12, timeout=RUN_TIMEOUT, interval=1, what="12 finished tasks")
    pid = wait_for(lambda: nextflow_head_pid(tmp_path), timeout=60, what="the Nextflow process")
    os.kill(pid, signal.SIGKILL)
    finished_before_kill = completed_tasks(tmp_path)
    killed = joined(thread, box)
    assert killed.returncode == -signal.SIGKILL, killed.explain()
    assert not (tmp_path / "results" / "benchmark_results.json").exists()

    resumed = run_on_slurm(slurm, tmp_path, "--models", FAULT_MODELS, "-resume")
    assert resumed.returncode == 0, resumed.explain() + slurm.logs()
    trace = resumed.trace()
    assert {row["status"] for row in trace} <= {"CACHED", "COMPLETED"}
    cached = {row["name"] for row in trace if row["status"] == "CACHED"}
    ran_again = {row["name"] for row in trace if row["status"] == "COMPLETED"}
    # Every task finished before the kill is reused: from the task cache (CACHED in the trace) or, for
    # the storeDir fetches, from their store (not in the trace at all); none runs again.
    assert cached and not set(finished_before_kill) & ran_again, set(finished_before_kill) & ran_again
    stored = [name for name in finished_before_kill if name not in cached]
    assert all(":FETCH_" in name for name in stored), stored
    assert_every_task_was_a_slurm_job(resumed, slurm)
    print(f"\nhead SIGKILLed after {len(finished_before_kill)} finished tasks; -resume: {len(cached)} cached, "
          f"{len(stored)} from storeDir, {len(ran_again)} run")
    assert_same_metrics(resumed.results(), local_run.results(), models=FAULT_MODELS.split(","))
