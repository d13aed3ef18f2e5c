"""The weight store against a real S3 API (moto on 127.0.0.1) with faults injected over HTTP.

After every fault: nothing half-written is left behind, and the next run recovers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from czbenchmarks import weights as W
from czbenchmarks.constants import WEIGHTS_MANIFEST
from czbenchmarks.utils import sync_s3_to_local
from s3_fixtures import S3Env, aws_test_env, fault_proxy, moto_server, s3env  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
SCVI_MODEL = ROOT / "assets" / "test" / "weights" / "scvi" / "homo_sapiens" / "model.pt"
MODEL = bytes(range(256)) * 40  # 10 KiB
VOCAB = b'{"genes": ["A", "B"]}'


def _publish(s3: S3Env, prefix: str = "mirror/m/v", checksum: bool = False) -> str:
    s3.put(f"{prefix}/model.pt", MODEL, checksum=checksum)
    s3.put(f"{prefix}/vocab/genes.json", VOCAB, checksum=checksum)
    return s3.uri(prefix)


def _leftovers(parent: Path) -> list:
    return [p.name for p in parent.rglob("*") if p.name.endswith((".partial", ".part", ".tmp", ".old"))]


def _assert_complete(dest: Path) -> None:
    assert (dest / "model.pt").read_bytes() == MODEL
    assert (dest / "vocab" / "genes.json").read_bytes() == VOCAB
    assert W.verify_manifest(dest) == []


def _assert_nothing_written(cache: Path) -> None:
    assert not (cache / "v").exists()
    assert _leftovers(cache) == []


# -- the happy path ------------------------------------------------------------------------
def test_fetch_lists_downloads_and_records_keys_and_sources(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.put("mirror/m/v2/other.pt", b"not mine")  # same prefix text, other folder
    manifest = W.fetch_weights([(uri, "")], tmp_path / "cache" / "v", extra={"model": "m"})
    _assert_complete(tmp_path / "cache" / "v")
    entries = {e["path"]: e for e in manifest["files"]}
    assert set(entries) == {"model.pt", "vocab/genes.json"}
    assert entries["model.pt"]["key"] == "mirror/m/v/model.pt"
    assert entries["model.pt"]["source"] == f"s3://{s3env.bucket}/mirror/m/v/model.pt"
    assert entries["model.pt"]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert manifest["source"] == f"{uri}->."
    assert all(signed for signed in s3env.proxy.signed)  # credentials found: the chain signs


def test_reuse_checks_the_manifest_and_a_mismatch_downloads_again(s3env, tmp_path):
    uri = _publish(s3env)
    dest = tmp_path / "cache" / "v"
    W.fetch_weights([(uri, "")], dest)
    s3env.proxy.clear()
    W.fetch_weights([(uri, "")], dest)
    assert s3env.proxy.requests == []  # verified locally: no request at all

    (dest / "model.pt").write_bytes(b"\0" * len(MODEL))
    W.fetch_weights([(uri, "")], dest)
    _assert_complete(dest)
    assert s3env.proxy.count("GET", "/model.pt") == 1
    assert _leftovers(tmp_path / "cache") == []


def test_listing_follows_every_page(s3env, tmp_path, monkeypatch):
    for i in range(5):
        s3env.put(f"w/part-{i}.bin", bytes([i]) * 10)
    monkeypatch.setenv("CZB_S3_PAGE_SIZE", "2")
    manifest = W.fetch_weights([(s3env.uri("w"), "")], tmp_path / "v")
    assert len(manifest["files"]) == 5
    assert sum("list-type=2" in target for _, target, _ in s3env.proxy.requests) == 3


def test_a_single_object_uri_is_fetched_under_its_name(s3env, tmp_path):
    s3env.put("w/model.pt", MODEL)
    manifest = W.fetch_weights([(s3env.uri("w/model.pt"), "")], tmp_path / "v")
    assert [e["path"] for e in manifest["files"]] == ["model.pt"]


def test_anonymous_reads_for_public_buckets(s3env, tmp_path, monkeypatch):
    uri = _publish(s3env)
    s3env.make_public()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")  # no credentials: anonymous
    _assert_complete(tmp_path / "cache" / "v")
    assert s3env.proxy.signed and not any(s3env.proxy.signed)


def test_reference_sync_reads_anonymously_and_falls_back_to_credentials(s3env, tmp_path):
    _publish(s3env)
    # This bucket refuses anonymous reads; the credential chain has keys.
    s3env.proxy.add("status", method="*", anonymous=True, times=-1, status=403, code="AccessDenied")
    paths = sync_s3_to_local(s3env.bucket, "mirror/m/v", str(tmp_path / "w"))
    assert sorted(Path(p).name for p in paths) == ["genes.json", "model.pt"]
    assert s3env.proxy.signed[0] is False and s3env.proxy.signed[-1] is True
    assert W.verify_manifest(tmp_path / "w") == []

    # Reference sync keeps verified local files and replaces a corrupt one.
    (tmp_path / "w" / "model.pt").write_bytes(b"\0" * len(MODEL))
    s3env.proxy.clear()
    sync_s3_to_local(s3env.bucket, "mirror/m/v", str(tmp_path / "w"), unsigned=None)
    assert s3env.proxy.count("GET", "/model.pt") == 1 and s3env.proxy.count("GET", "/genes.json") == 0
    assert (tmp_path / "w" / "model.pt").read_bytes() == MODEL


# -- retries ------------------------------------------------------------------------------
def test_a_request_failing_twice_then_succeeding_is_retried_by_botocore(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("status", path="/model.pt", times=2)  # 503 ServiceUnavailable
    s3env.proxy.add("status", query="list-type=2", times=2, status=500, code="InternalError")
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")
    assert s3env.proxy.count("GET", "/model.pt") == 3
    assert sum("list-type=2" in target for _, target, _ in s3env.proxy.requests) == 3


def test_throttling_is_retried_with_backoff_when_botocore_gives_up(s3env, tmp_path, monkeypatch, caplog):
    uri = _publish(s3env)
    monkeypatch.setenv("CZB_S3_MAX_ATTEMPTS", "1")  # no botocore retries: our own loop must do it
    s3env.proxy.add("status", path="/model.pt", times=2, status=503, code="SlowDown")
    caplog.set_level("WARNING", logger="czbenchmarks.weights")
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")
    assert s3env.proxy.count("GET", "/model.pt") == 3
    assert caplog.text.count("S3 error SlowDown; retrying") == 2


def test_persistent_5xx_gives_up_with_one_line_and_nothing_written(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("status", path="/model.pt", times=-1)
    with pytest.raises(W.WeightStoreError, match=r"model\.pt: S3 error ServiceUnavailable \(gave up after 3"):
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    # botocore sent each of our 3 attempts 3 times
    assert s3env.proxy.count("GET", "/model.pt") == 9


# -- truncated and corrupt bodies ----------------------------------------------------------
def test_a_body_cut_short_once_is_downloaded_again(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("truncate", path="/model.pt", keep=100)
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")
    assert s3env.proxy.count("GET", "/model.pt") == 2


def test_a_body_always_cut_short_fails_cleanly_and_the_next_run_recovers(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("truncate", path="/model.pt", keep=100, times=-1)
    with pytest.raises(W.WeightStoreError, match=r"s3://.*/model\.pt: .*gave up after 3 attempts") as info:
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    assert "\n" not in str(info.value)
    _assert_nothing_written(tmp_path / "cache")
    s3env.proxy.clear()
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")


def test_a_corrupt_body_is_caught_by_the_etag_md5(s3env, tmp_path):
    uri = _publish(s3env)  # single-part objects, no stored checksum: only the ETag can tell
    s3env.proxy.add("corrupt", path="/model.pt", times=-1)
    with pytest.raises(W.WeightStoreError, match=r"corrupt download \(MD5 does not match the ETag\)"):
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    s3env.proxy.clear()
    s3env.proxy.add("corrupt", path="/model.pt", times=1)
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")


def test_a_corrupt_body_is_caught_by_the_s3_checksum(s3env, tmp_path):
    uri = _publish(s3env, checksum=True)
    s3env.proxy.add("corrupt", path="/model.pt", times=-1)
    with pytest.raises(W.WeightStoreError, match=r"FlexibleChecksumError"):
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    s3env.proxy.clear()
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")


def test_a_multipart_object_is_checked_against_the_source_manifest(s3env, tmp_path):
    # A multipart ETag is not an MD5; the manifest published beside the weights has the sha256.
    upload = s3env.client.create_multipart_upload(Bucket=s3env.bucket, Key="w/model.pt")
    part = s3env.client.upload_part(Bucket=s3env.bucket, Key="w/model.pt", UploadId=upload["UploadId"],
                                    PartNumber=1, Body=MODEL)
    s3env.client.complete_multipart_upload(
        Bucket=s3env.bucket, Key="w/model.pt", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    published = {"files": [{"path": "model.pt", "size": len(MODEL), "sha256": hashlib.sha256(MODEL).hexdigest()}]}
    s3env.put(f"w/{WEIGHTS_MANIFEST}", json.dumps(published).encode())
    s3env.proxy.add("corrupt", path="/w/model.pt", times=-1)
    with pytest.raises(W.WeightStoreError, match=r"sha256 does not match the source manifest"):
        W.fetch_weights([(s3env.uri("w"), "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    s3env.proxy.clear()
    manifest = W.fetch_weights([(s3env.uri("w"), "")], tmp_path / "cache" / "v")
    assert [e["path"] for e in manifest["files"]] == ["model.pt"]  # the source manifest is not a weight


# -- clear one-line errors -----------------------------------------------------------------
def test_a_key_missing_at_download_time_fails_cleanly_and_the_next_run_recovers(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("status", path="/model.pt", times=-1, status=404, code="NoSuchKey")
    with pytest.raises(W.WeightStoreError, match=r"^s3://.*/mirror/m/v/model\.pt: no such key$"):
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    assert s3env.proxy.count("GET", "/model.pt") == 1  # not worth a retry
    s3env.proxy.clear()
    W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_complete(tmp_path / "cache" / "v")


def test_a_missing_single_object_says_no_such_key(s3env, tmp_path):
    s3env.put("w/model.pt", MODEL)
    with pytest.raises(W.WeightStoreError, match=r"s3://.*/w/missing\.pt: no such key"):
        W.fetch_weights([(s3env.uri("w/missing.pt"), "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")


def test_no_such_bucket(s3env, tmp_path):
    with pytest.raises(W.WeightStoreError, match=r"^s3://czb-no-such-bucket-x/w/: no such bucket 'czb-no-such-bucket-x'$"):
        W.fetch_weights([("s3://czb-no-such-bucket-x/w", "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")


def test_an_empty_prefix_is_an_error(s3env, tmp_path):
    s3env.put("elsewhere/model.pt", MODEL)
    with pytest.raises(W.WeightStoreError, match=r"^s3://.*/w/: empty prefix \(no objects to download\)$"):
        W.fetch_weights([(s3env.uri("w/"), "")], tmp_path / "cache" / "v")
    with pytest.raises(W.WeightStoreError, match="empty prefix"):
        sync_s3_to_local(s3env.bucket, "w/", str(tmp_path / "sync"))


def test_access_denied(s3env, tmp_path):
    uri = _publish(s3env)
    s3env.proxy.add("status", method="*", times=-1, status=403, code="AccessDenied")
    with pytest.raises(W.WeightStoreError, match=r"^s3://.*/mirror/m/v/: access denied \(AccessDenied\); check AWS"):
        W.fetch_weights([(uri, "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")


def test_a_key_escaping_the_weights_folder_is_refused(s3env, tmp_path):
    s3env.put("w/model.pt", MODEL)
    s3env.put("w/../../escaped.pt", b"evil")
    listed = [item["Key"] for item in s3env.client.list_objects_v2(Bucket=s3env.bucket)["Contents"]]
    assert "w/../../escaped.pt" in listed
    with pytest.raises(W.WeightStoreError, match=r"refusing object key 'w/\.\./\.\./escaped\.pt'"):
        W.fetch_weights([(s3env.uri("w"), "")], tmp_path / "cache" / "v")
    _assert_nothing_written(tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.pt"))
    assert s3env.proxy.count("GET", "/model.pt") == 0  # refused before any download


def test_uce_variant_fetches_its_checkpoint_and_the_shared_files_only(s3env, tmp_path):
    """The UCE prefix holds both checkpoints; a variant fetches its own and model_files/, not the other."""
    from omegaconf import OmegaConf

    for key, body in (("uce/4layer_model.torch", b"four"), ("uce/33l_8ep_1024t_1280.torch", b"thirty-three" * 100),
                      ("uce/model_files/species_chrom.csv", b"species,gene"), ("uce/model_files/all_tokens.torch", b"t")):
        s3env.put(f"models/v1/{key}", body)
    config = OmegaConf.to_container(OmegaConf.load(ROOT / "containers" / "uce" / "config.yaml"), resolve=True)
    mirror = f"s3://{s3env.bucket}/models/v1/"
    for variant, checkpoint in (("4l", "4layer_model.torch"), ("33l", "33l_8ep_1024t_1280.torch")):
        request = W.plan_weights("uce", variant, config["models"][variant], None)
        sources = [(uri.replace("s3://cz-benchmarks-data/models/v1/", mirror), sub) for uri, sub in request.sources]
        manifest = W.fetch_weights(sources, tmp_path / variant)
        assert {e["path"] for e in manifest["files"]} == {
            checkpoint, "model_files/species_chrom.csv", "model_files/all_tokens.torch"}, manifest["files"]


# -- end to end: the pipeline fetches scVI's weights from S3 ---------------------------------
@pytest.mark.e2e
def test_pipeline_fetches_weights_from_s3_and_reports_their_sha256(s3env, tmp_path):
    from conftest import run_nextflow

    bucket = "czb-test-weights"
    try:
        s3env.client.create_bucket(Bucket=bucket)
    except s3env.client.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3env.client.upload_file(str(SCVI_MODEL), bucket, "mirror/scvi/homo_sapiens/model.pt")
    # -profile test also holds a mouse dataset: its scVI variant comes from the same mirror.
    s3env.client.upload_file(str(SCVI_MODEL.parents[1] / "mus_musculus" / "model.pt"), bucket,
                             "mirror/scvi/mus_musculus/model.pt")
    s3env.proxy.add("status", path="/mirror/scvi/homo_sapiens/model.pt", times=1)  # retried inside the run
    env = {**aws_test_env(s3env.proxy.url), "CZB_FETCH_BACKOFF": "0.1"}
    run = run_nextflow(tmp_path, "-profile", "test", "--weights_mirror", f"s3://{bucket}/mirror",
                       "--weights_cache", str(tmp_path / "wc"), env=env)
    assert run.returncode == 0, run.explain()

    digest = W.sha256_file(SCVI_MODEL)
    manifests = {p.parent.name.split("-")[0]: json.loads(p.read_text())
                 for p in (tmp_path / "wc" / "scvi").glob(f"*/{WEIGHTS_MANIFEST}")}
    assert set(manifests) == {"homo_sapiens", "mus_musculus"}
    manifest = manifests["homo_sapiens"]
    assert manifest["files"][0]["source"] == f"s3://{bucket}/mirror/scvi/homo_sapiens/model.pt"
    assert manifest["files"][0]["sha256"] == digest

    check = run.results()["completeness"]
    assert check["complete"] and check["expected"] == 15 and check["not_applicable"] == [], check
    rows = [row for row in run.results()["results"]
            if row["model"] == "scvi" and row["variant"] == "homo_sapiens"]
    assert rows
    for row in rows:
        # the report writes "<file>=<sha256>" per weight file
        assert row["weights_sha256"] in (digest, f"model.pt={digest}")
        record = run.results()["provenance"][row["provenance_id"]]["provenance"]
        assert record["weights"]["source"].startswith(f"s3://{bucket}/mirror/scvi/homo_sapiens")
    assert s3env.proxy.count("GET", "/mirror/scvi/homo_sapiens/model.pt") == 2


# -- end to end: the vocabulary verdict is the same on a cold and a warm weights cache ----------
@pytest.mark.e2e
def test_vocabulary_verdict_is_the_same_cold_and_warm(s3env, tmp_path):
    """scGPT's vocabulary lives in its weights on S3. A dataset it cannot read is *not applicable* on the
    first run (cold cache) and on a later one (warm cache) alike — never a crash, never a stale pass."""
    import anndata as ad

    from conftest import TEST_H5AD, run_nextflow

    bucket = "czb-test-vocab"
    try:
        s3env.client.create_bucket(Bucket=bucket)
    except s3env.client.exceptions.BucketAlreadyOwnedByYou:
        pass
    scgpt = ROOT / "assets" / "test" / "weights" / "scgpt" / "human"
    for path in sorted(p for p in scgpt.rglob("*") if p.is_file()):
        s3env.client.upload_file(str(path), bucket, f"mirror/scgpt/human/{path.relative_to(scgpt)}")
    alien = ad.read_h5ad(TEST_H5AD)
    alien.var["feature_name"] = [f"NOTAGENE{i}" for i in range(alien.n_vars)]
    alien.write_h5ad(tmp_path / "alien.h5ad")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("id,h5ad,organism,label_key,tasks\n"
                     f"pbmc68k,{TEST_H5AD},homo_sapiens,cell_type,clustering\n"
                     f"alien,{tmp_path / 'alien.h5ad'},homo_sapiens,cell_type,clustering\n")
    env = aws_test_env(s3env.proxy.url)
    args = ("-profile", "test", "--input", str(sheet), "--models", "scgpt", "--baselines", "false",
            "--weights_mirror", f"s3://{bucket}/mirror", "--weights_cache", str(tmp_path / "wc"))

    verdicts = []
    for launch in ("cold", "warm"):
        run = run_nextflow(tmp_path / launch, *args, env=env)
        assert run.returncode == 0, run.explain()
        check = run.results()["completeness"]
        assert check["complete"] and [(c["dataset"], c["task"]) for c in check["produced_cells"]] == [("pbmc68k", "clustering")]
        (na,) = check["not_applicable"]
        assert na["dataset"] == "alien" and "are in the model's vocabulary" in na["reason"], na
        assert not [r for r in run.trace() if r["process"].endswith("RUN_MODEL") and r["tag"].startswith("alien:")]
        verdicts.append({p.name: json.loads(p.read_text()) for p in (run.outdir / "validation").glob("*.json")})
        fetches = [r for r in run.trace() if r["process"].endswith("FETCH_WEIGHTS")]
        assert len(fetches) == (1 if launch == "cold" else 0), fetches  # warm: storeDir skips the fetch
    assert verdicts[0] == verdicts[1]
    assert verdicts[0]["alien.scgpt.vocabulary.json"]["verdict"] == "incompatible"
