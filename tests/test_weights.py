"""The weight store without S3: manifests, local and HTTP sources, atomic fetches, retries, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from czbenchmarks import weights as W
from czbenchmarks.constants import WEIGHTS_MANIFEST

ROOT = Path(__file__).resolve().parents[1]
SCVI_WEIGHTS = ROOT / "assets" / "test" / "weights" / "scvi" / "homo_sapiens"


def _make_source(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"weights" * 100)
    (folder / "sub" / "vocab.json").write_text('{"a": 1}')
    return folder


def _leftovers(parent: Path) -> list:
    """Temporary names a fetch may create; none should survive a fetch, failed or not."""
    return [p.name for p in parent.rglob("*") if p.name.endswith((".partial", ".part", ".tmp", ".old"))]


# -- paths and manifests -------------------------------------------------------------------
@pytest.mark.parametrize("key", ["w/../evil", "w/../../etc/passwd", "../x", "w/a/../../b", "w/./x", "w/a\\..\\b"])
def test_keys_escaping_the_folder_are_refused(key):
    with pytest.raises(W.WeightStoreError, match="outside the weights folder"):
        W.safe_relative_path(key, "w/")


def test_safe_relative_path_strips_the_prefix():
    assert W.safe_relative_path("w/a/b.pt", "w/").as_posix() == "a/b.pt"


def test_manifest_round_trip_and_verification(tmp_path):
    folder = _make_source(tmp_path / "w")
    manifest = W.build_manifest(folder, "s3://b/p", {"model": "m"},
                                origins={"model.bin": {"key": "p/model.bin", "source": "s3://b/p/model.bin"}})
    W.write_manifest(folder, manifest)
    assert W.read_manifest(folder) == manifest
    assert manifest["model"] == "m" and manifest["source"] == "s3://b/p"
    entry = {e["path"]: e for e in manifest["files"]}["model.bin"]
    assert entry == {"path": "model.bin", "key": "p/model.bin", "source": "s3://b/p/model.bin",
                     "size": 700, "sha256": hashlib.sha256(b"weights" * 100).hexdigest(),
                     "mtime_ns": (folder / "model.bin").stat().st_mtime_ns}
    assert W.verify_manifest(folder) == []

    (folder / "model.bin").write_bytes(b"Weights" * 100)  # same size, other content
    assert W.verify_manifest(folder) == ["sha256 mismatch for model.bin"]
    assert W.verify_manifest(folder, checksums=False) == []
    (folder / "sub" / "vocab.json").unlink()
    assert "missing file sub/vocab.json" in W.verify_manifest(folder)


def test_verify_manifest_without_or_with_a_broken_manifest(tmp_path):
    folder = _make_source(tmp_path / "w")
    assert W.verify_manifest(folder, require=False) == []
    assert W.verify_manifest(folder) == [f"{folder} has no {WEIGHTS_MANIFEST}"]
    (folder / WEIGHTS_MANIFEST).write_text("{not json")
    assert W.read_manifest(folder) is None
    assert "not a valid manifest" in W.verify_manifest(folder, require=False)[0]


# -- fetch_weights from local folders --------------------------------------------------------
def test_fetch_from_a_local_folder_writes_a_manifest_and_reuses_it(tmp_path, caplog):
    source = _make_source(tmp_path / "src")
    dest = tmp_path / "cache" / "v1"
    manifest = W.fetch_weights([(str(source), "")], dest, extra={"model": "m", "variant": "v"})
    assert sorted(e["path"] for e in manifest["files"]) == ["model.bin", "sub/vocab.json"]
    assert {e["source"] for e in manifest["files"]} == {str(source / "model.bin"), str(source / "sub/vocab.json")}
    assert W.verify_manifest(dest) == []
    assert _leftovers(tmp_path / "cache") == []

    # Reuse: the source may even disappear, the verified copy is kept.
    (source / "model.bin").unlink()
    caplog.set_level("INFO")
    assert W.fetch_weights([(str(source), "")], dest) == manifest
    assert "not downloading" in caplog.text


def test_a_cache_that_fails_its_manifest_is_fetched_again(tmp_path):
    source = _make_source(tmp_path / "src")
    dest = tmp_path / "cache" / "v1"
    W.fetch_weights([(f"file://{source}", "")], dest)
    (dest / "model.bin").write_bytes(b"tampered" * 10)
    W.fetch_weights([(f"file://{source}", "")], dest)
    assert (dest / "model.bin").read_bytes() == b"weights" * 100
    assert W.verify_manifest(dest) == []
    assert _leftovers(tmp_path / "cache") == []


def test_several_sources_fill_subfolders(tmp_path):
    model = _make_source(tmp_path / "model")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")
    manifest = W.fetch_weights([(str(model), ""), (str(vocab), "extra")], tmp_path / "dest")
    assert "extra/vocab.txt" in {e["path"] for e in manifest["files"]}
    assert manifest["source"] == f"{model}->. {vocab}->extra"


@pytest.mark.parametrize("source, message", [
    ("/no/such/folder", "no such file or folder"),
    ("gs://bucket/x", "unsupported weights source"),
])
def test_bad_sources_fail_cleanly_and_leave_nothing(tmp_path, source, message):
    with pytest.raises(W.WeightStoreError, match=message) as info:
        W.fetch_weights([(source, "")], tmp_path / "cache" / "v1")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache" / "v1").exists()
    assert _leftovers(tmp_path / "cache") == []


def test_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(W.WeightStoreError, match="folder is empty"):
        W.fetch_weights([(str(tmp_path / "empty"), "")], tmp_path / "dest")


def test_a_failed_refetch_keeps_nothing_half_written(tmp_path):
    source = _make_source(tmp_path / "src")
    dest = tmp_path / "cache" / "v1"
    W.fetch_weights([(str(source), "")], dest)
    (dest / "model.bin").write_bytes(b"x")  # broken cache
    (source / "model.bin").unlink()
    (source / "sub" / "vocab.json").unlink()
    with pytest.raises(W.WeightStoreError):
        W.fetch_weights([(str(source), "")], dest)
    assert _leftovers(tmp_path / "cache") == []


# -- retries -------------------------------------------------------------------------------
def test_with_retries_retries_transient_errors_then_gives_up(monkeypatch):
    calls = []
    policy = W.RetryPolicy(attempts=3, backoff=0.001)

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise W._TransientError("HTTP 503")
        return "ok"

    assert W.with_retries("x", flaky, policy) == "ok" and len(calls) == 3

    def always():
        raise W._TransientError("HTTP 503")

    with pytest.raises(W.WeightStoreError, match=r"x: HTTP 503 \(gave up after 3 attempts\)"):
        W.with_retries("x", always, policy)

    def fatal():
        calls.append(1)
        raise W.WeightStoreError("no such key")

    calls.clear()
    with pytest.raises(W.WeightStoreError, match="no such key"):
        W.with_retries("x", fatal, policy)
    assert len(calls) == 1


def test_backoff_grows_exponentially_and_reads_the_environment(monkeypatch):
    policy = W.RetryPolicy(attempts=5, backoff=2.0, max_delay=5.0)
    assert 1.0 <= policy.delay(1) <= 2.0
    assert 2.0 <= policy.delay(2) <= 4.0
    assert 2.5 <= policy.delay(4) <= 5.0
    monkeypatch.setenv("CZB_FETCH_ATTEMPTS", "7")
    monkeypatch.setenv("CZB_FETCH_BACKOFF", "0.25")
    assert W.RetryPolicy.from_env() == W.RetryPolicy(attempts=7, backoff=0.25)


# -- HTTP(S) sources (plain HTTP on 127.0.0.1 exercises the same code) -----------------------
class _Files(BaseHTTPRequestHandler):
    plan: dict = {}
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.seen.append(self.path)
        body, failures = self.plan.get(self.path, (None, []))
        if body is None:
            self.send_error(404)
            return
        mode = failures.pop(0) if failures else "ok"
        if mode == "503":
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:5] if mode == "short" else body)


@pytest.fixture
def http_files(monkeypatch):
    monkeypatch.setenv("CZB_FETCH_BACKOFF", "0.01")
    _Files.plan, _Files.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Files
    server.shutdown()
    server.server_close()


def test_http_source_retries_5xx_and_short_bodies(tmp_path, http_files):
    url, files = http_files
    files.plan["/w/model.pt"] = (b"0123456789" * 50, ["503", "short"])
    manifest = W.fetch_weights([(f"{url}/w/model.pt", "")], tmp_path / "dest")
    assert (tmp_path / "dest" / "model.pt").read_bytes() == b"0123456789" * 50
    assert manifest["files"][0]["source"] == f"{url}/w/model.pt"
    assert files.seen.count("/w/model.pt") == 3


def test_http_source_not_found_is_one_line(tmp_path, http_files):
    url, _ = http_files
    with pytest.raises(W.WeightStoreError, match=r"HTTP 404 \(not found\)$"):
        W.fetch_weights([(f"{url}/missing.pt", "")], tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and _leftovers(tmp_path) == []


# -- the FETCH_WEIGHTS script ----------------------------------------------------------------
def test_fetch_script_writes_manifest_with_model_and_variant(tmp_path):
    dest = tmp_path / "homo_sapiens-abc"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "czb_fetch_weights.py"), "--model", "scvi", "--variant", "homo_sapiens",
         "--sources", json.dumps([[str(SCVI_WEIGHTS), ""]]), "--dest", str(dest)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert run.returncode == 0, run.stderr
    manifest = W.read_manifest(dest)
    assert manifest["model"] == "scvi" and manifest["variant"] == "homo_sapiens"
    assert manifest["files"][0]["sha256"] == W.sha256_file(SCVI_WEIGHTS / "model.pt")


def test_fetch_script_reports_errors_on_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "czb_fetch_weights.py"), "--model", "m", "--variant", "v",
         "--sources", json.dumps([["/no/such/weights", ""]]), "--dest", str(tmp_path / "d")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "FETCH_WEIGHTS m/v: /no/such/weights: no such file or folder"
