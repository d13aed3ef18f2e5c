"""The weight store: fetch a model's weights once, atomically, with a checksummed manifest.

Sources: ``s3://bucket/prefix`` (anonymous for public buckets, the AWS credential chain
otherwise), ``https://`` single files, and local folders (``file://`` or a plain path).
A fetch writes into a temporary sibling folder, verifies it, writes the manifest and only
then renames it into place, so an interrupted fetch never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

from .constants import WEIGHTS_MANIFEST

logger = logging.getLogger(__name__)

MANIFEST_SCHEMA = 1
_CHUNK = 1 << 20


class WeightStoreError(RuntimeError):
    """A fetch failed; the message is one line naming the source and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relative_path(key: str, prefix: str) -> PurePosixPath:
    """The path of an object key below ``prefix``; refuses keys that would escape the target folder."""
    relative = key[len(prefix):].lstrip("/") if key.startswith(prefix) else key
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts:
        raise WeightStoreError(f"refusing object key '{key}': it would be written outside the weights folder")
    return path


# -- manifest ------------------------------------------------------------------------------
def build_manifest(folder: Path, source: str, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Describe every file under ``folder`` (relative path, size, sha256)."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != WEIGHTS_MANIFEST):
        files.append(
            {"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)}
        )
    manifest: Dict[str, Any] = {"schema": MANIFEST_SCHEMA, "source": source, "files": files}
    manifest.update(extra or {})
    return manifest


def write_manifest(folder: Path, manifest: Dict[str, Any]) -> Path:
    target = folder / WEIGHTS_MANIFEST
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, target)
    return target


def read_manifest(folder: Path) -> Optional[Dict[str, Any]]:
    path = Path(folder) / WEIGHTS_MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def verify_manifest(folder: Path, require: bool = True, checksums: bool = True) -> List[str]:
    """Problems found checking ``folder`` against its manifest (empty list: verified).

    ``require=False`` accepts a folder without a manifest (weights a user placed by hand).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder} has no {WEIGHTS_MANIFEST}"] if require else []
    problems = []
    for entry in manifest.get("files", []):
        path = folder / entry["path"]
        if not path.is_file():
            problems.append(f"missing file {entry['path']}")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"size mismatch for {entry['path']}: {path.stat().st_size} != {entry['size']}")
        elif checksums and sha256_file(path) != entry["sha256"]:
            problems.append(f"sha256 mismatch for {entry['path']}")
    if not manifest.get("files"):
        problems.append("manifest lists no files")
    return problems


# -- S3 ------------------------------------------------------------------------------------
def s3_client(unsigned: Optional[bool] = None):
    """A boto3 S3 client with adaptive retries (throttling, 5xx).

    ``unsigned=None`` signs requests when the AWS credential chain finds credentials and
    sends anonymous requests otherwise (public buckets). ``AWS_ENDPOINT_URL_S3`` is honoured.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session()
    if unsigned is None:
        unsigned = session.get_credentials() is None
    config = Config(
        retries={"max_attempts": int(os.environ.get("CZB_S3_MAX_ATTEMPTS", "6")), "mode": "adaptive"},
        signature_version=UNSIGNED if unsigned else None,
        connect_timeout=20,
        read_timeout=60,
    )
    return session.client("s3", config=config)


def _s3_error(err: Exception, bucket: str, key: str) -> WeightStoreError:
    """One line for the S3 failures users hit: no bucket, no key, access denied."""
    code = ""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    where = f"s3://{bucket}/{key}"
    if code in ("NoSuchBucket",):
        return WeightStoreError(f"{where}: no such bucket '{bucket}'")
    if code in ("NoSuchKey", "404", "NotFound"):
        return WeightStoreError(f"{where}: no such key")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return WeightStoreError(f"{where}: access denied ({code}); check AWS credentials or bucket policy")
    return WeightStoreError(f"{where}: {type(err).__name__}: {err}".splitlines()[0])


def list_s3_objects(client, bucket: str, prefix: str) -> List[Tuple[str, int, Optional[str]]]:
    """(key, size, etag) of every object under the prefix, across all pages; folder markers skipped."""
    from botocore.exceptions import BotoCoreError, ClientError

    objects = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or key == prefix or not key.startswith(prefix):
                    continue
                objects.append((key, int(item["Size"]), item.get("ETag", "").strip('"') or None))
    except (ClientError, BotoCoreError) as err:
        raise _s3_error(err, bucket, prefix) from None
    return objects


def _download_s3_object(client, bucket: str, key: str, size: int, target: Path) -> None:
    """Download one object to ``target`` via a temporary name; a short read is an error."""
    from botocore.exceptions import BotoCoreError, ClientError

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        client.download_file(bucket, key, str(tmp))
    except (ClientError, BotoCoreError) as err:
        tmp.unlink(missing_ok=True)
        raise _s3_error(err, bucket, key) from None
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    actual = tmp.stat().st_size
    if actual != size:
        tmp.unlink(missing_ok=True)
        raise WeightStoreError(f"s3://{bucket}/{key}: truncated download ({actual} of {size} bytes)")
    os.replace(tmp, target)


def sync_s3_to_local(bucket: str, prefix: str, local_dir: str, unsigned: Optional[bool] = True) -> List[str]:
    """Copy every object under ``s3://bucket/prefix`` into ``local_dir`` (reference signature).

    Files whose size already matches are kept. Each file is written to a temporary name and
    renamed, keys escaping ``local_dir`` are refused, and an empty prefix is an error
    (the reference silently did nothing). Returns the local paths.
    """
    client = s3_client(unsigned)
    objects = list_s3_objects(client, bucket, prefix)
    if not objects:
        raise WeightStoreError(f"s3://{bucket}/{prefix}: empty prefix (no objects to download)")
    root = Path(local_dir)
    written = []
    for key, size, _etag in objects:
        target = root / safe_relative_path(key, prefix)
        if not (target.is_file() and target.stat().st_size == size):
            logger.info("downloading s3://%s/%s (%d bytes)", bucket, key, size)
            _download_s3_object(client, bucket, key, size, target)
        written.append(str(target))
    return written


# -- generic fetch -------------------------------------------------------------------------
def _copy_local(source: Path, dest: Path) -> None:
    if source.is_file():
        shutil.copy2(source, dest / source.name)
        return
    if not source.is_dir():
        raise WeightStoreError(f"{source}: no such file or folder")
    files = [p for p in source.rglob("*") if p.is_file() and p.name != WEIGHTS_MANIFEST]
    if not files:
        raise WeightStoreError(f"{source}: folder is empty")
    for path in files:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _download_https(url: str, dest: Path) -> None:
    import urllib.request

    name = PurePosixPath(urlparse(url).path).name or "download"
    tmp = dest / f".{name}.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as handle:
            shutil.copyfileobj(response, handle, _CHUNK)
    except Exception as err:  # urllib raises many types; report one line
        tmp.unlink(missing_ok=True)
        raise WeightStoreError(f"{url}: {type(err).__name__}: {err}".splitlines()[0]) from None
    os.replace(tmp, dest / name)


def split_s3_uri(uri: str) -> Tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def fill_folder(source: str, dest: Path) -> None:
    """Copy the weights named by ``source`` (s3://, https://, file:// or a path) into ``dest``."""
    parsed = urlparse(source)
    if parsed.scheme == "s3":
        bucket, prefix = split_s3_uri(source)
        sync_s3_to_local(bucket, prefix, str(dest), unsigned=None)
    elif parsed.scheme in ("http", "https"):
        _download_https(source, dest)
    elif parsed.scheme in ("", "file"):
        _copy_local(Path(parsed.path if parsed.scheme == "file" else source).expanduser(), dest)
    else:
        raise WeightStoreError(f"{source}: unsupported weights source (use s3://, https://, file:// or a path)")


def fetch_weights(
    sources: Iterable[Tuple[str, str]],
    dest: Path,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Fetch weights into ``dest`` atomically and return its manifest.

    ``sources`` pairs a source URI with the sub-folder of ``dest`` it fills (``""``: the root),
    so a model can combine e.g. its checkpoint and a shared vocabulary. If ``dest`` already
    verifies against its manifest (same sources), nothing is downloaded; otherwise it is
    fetched anew into a temporary sibling folder that is renamed into place only when complete.
    """
    sources = list(sources)
    dest = Path(dest)
    source_text = " ".join(f"{uri}->{sub or '.'}" for uri, sub in sources)
    existing = read_manifest(dest) if dest.is_dir() else None
    if existing and existing.get("source") == source_text and not verify_manifest(dest):
        logger.info("weights in %s verified against their manifest; not downloading", dest)
        return existing
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        for uri, sub in sources:
            target = staging / sub if sub else staging
            target.mkdir(parents=True, exist_ok=True)
            fill_folder(uri, target)
        manifest = build_manifest(staging, source_text, extra)
        write_manifest(staging, manifest)
        problems = verify_manifest(staging)
        if problems:
            raise WeightStoreError(f"{source_text}: fetched weights failed verification: {problems[0]}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
