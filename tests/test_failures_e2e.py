"""End to end: one dataset x model that raises, and one that is killed, never cost the others their
results or the report; the run says it failed; `-resume` reruns exactly the failed pairs.

The failures come from a test model (tests/fault_model) added to a copy of the pipeline the way
docs/adding_a_model.md describes; it fails on the datasets that CZB_TEST_FAULTS names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TEST_H5AD
from test_toy_model_e2e import add_model, copy_repo, run_nextflow_in

pytestmark = pytest.mark.e2e

FAULT = Path(__file__).resolve().parent / "fault_model"


def add_fault_model(repo: Path) -> None:
    add_model(repo, FAULT, "fault_model.py", "fault", [FAULT / "config.yaml"])


def by_tag(trace, process):
    rows = {}
    for row in trace:
        if row["process"].endswith(process):
            rows.setdefault(row["tag"], []).append(row)
    return rows


def test_a_failing_pair_never_sinks_the_run_and_resume_reruns_only_it(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    add_fault_model(repo)
    sheet = tmp_path / "samplesheet.csv"
    # "oneclass" labels every cell alike: clustering cannot apply, so its model never runs.
    sheet.write_text("id,h5ad,organism,label_key,tasks\n"
                     + "".join(f"{name},{TEST_H5AD},homo_sapiens,cell_type,clustering\n" for name in ("good", "boom", "oom"))
                     + f"oneclass,{TEST_H5AD},homo_sapiens,assay,clustering\n")
    launch = tmp_path / "launch"
    args = ("-profile", "test", "--input", str(sheet), "--models", "fault", "--baselines", "false",
            "--weights_cache", str(launch / "weights_cache"))

    run = run_nextflow_in(repo, launch, *args, env={"CZB_TEST_FAULTS": "boom:raise,oom:kill"})
    # The run says it failed ...
    assert run.returncode != 0, run.explain()
    assert "2 of 3 scheduled results are missing" in run.proc.stdout + run.proc.stderr + run.log, run.explain()
    # ... yet every good pair's results and the report are published.
    results = run.results()
    good = {r["metric"] for r in results["results"] if r["dataset"] == "good" and r["model"] == "fault"}
    assert good == {"adjusted_rand_index", "normalized_mutual_info"}, results["results"]
    check = results["completeness"]
    assert not check["complete"] and check["expected"] == 3 and check["produced"] == 1
    missing = {c["dataset"]: c["reason"] for c in check["missing"]}
    assert set(missing) == {"boom", "oom"}
    assert "RUN_MODEL failed (exit 1, attempt 1)" in missing["boom"], missing
    assert "injected failure on dataset 'boom'" in missing["boom"], missing
    assert "RUN_MODEL failed (exit 137, attempt 3), killed" in missing["oom"], missing
    # The kill was retried up to the ladder's end; the exception was not retried.
    runs = by_tag(run.trace(), "RUN_MODEL")
    assert len(runs["oom:fault:v1"]) == 3 and len(runs["boom:fault:v1"]) == 1, runs
    assert "oneclass:fault:v1" not in runs and [(c["dataset"], c["task"]) for c in check["not_applicable"]] == [
        ("oneclass", "clustering")], check["not_applicable"]
    assert "needs 2+ classes" in check["not_applicable"][0]["reason"]
    page = (run.outdir / "report.html").read_text()
    assert "Incomplete" in page and page.index("id='missing'") < page.index("id='summary'")

    resumed = run_nextflow_in(repo, launch, *args, "-resume")
    assert resumed.returncode == 0, resumed.explain()
    trace = resumed.trace()
    validate = by_tag(trace, "VALIDATE")
    assert all(rows[-1]["status"] == "CACHED" for rows in validate.values()), validate
    runs = by_tag(trace, "RUN_MODEL")
    assert runs["good:fault:v1"][-1]["status"] == "CACHED"
    assert runs["boom:fault:v1"][-1]["status"] == "COMPLETED" and runs["oom:fault:v1"][-1]["status"] == "COMPLETED"
    assert [r["status"] for r in by_tag(trace, "EVALUATE")["good:fault:v1:clustering"]] == ["CACHED"]
    check = resumed.results()["completeness"]
    assert check["complete"] and check["produced"] == 3, check
