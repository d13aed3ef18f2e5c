"""The weight store: fetch a model's weights once, atomically, with a checksummed manifest.

Sources: ``s3://bucket/prefix`` (anonymous for public buckets, the AWS credential chain
otherwise), ``http(s)://`` single files, and local folders or files (``file://`` or a path).

Every object is streamed to a temporary name, checked (byte count against the listing and the
``Content-Length``, MD5 against a single-part ETag, any S3 checksum botocore validates, and the
sha256 of a manifest published beside the source) and only then renamed. ``fetch_weights`` does
the same one level up: it fills a temporary sibling folder, writes the manifest, verifies it and
renames the folder into place, so an interrupted or corrupt fetch never looks finished.

Transient failures (throttling, 5xx, dropped connections, short or corrupt bodies) are retried:
botocore retries each request (``CZB_S3_MAX_ATTEMPTS``, standard mode) and each object download
is retried as a whole with exponential backoff (``CZB_FETCH_ATTEMPTS``, ``CZB_FETCH_BACKOFF``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar
from urllib.parse import urlparse

from .constants import WEIGHTS_MANIFEST

logger = logging.getLogger(__name__)
logging.getLogger("botocore").setLevel(logging.WARNING)

MANIFEST_SCHEMA = 2
_CHUNK = 1 << 20
T = TypeVar("T")

# S3 error codes that mean "try again later" rather than "this will never work".
_RETRYABLE_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "SlowDown", "RequestLimitExceeded",
    "TooManyRequests", "TooManyRequestsException", "RequestThrottled", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "ServiceUnavailable", "BadGateway",
    "GatewayTimeout", "500", "502", "503", "504", "429",
}
_NO_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId",
    "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccountProblem",
}


class WeightStoreError(RuntimeError):
    """A fetch failed; the message is one line naming the source and the problem."""


class _TransientError(Exception):
    """A failure worth retrying (short read, corrupt body, throttling, 5xx); carries one line."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often one object download is tried and how long to wait between tries.

    The n-th retry waits ``backoff * 2**(n-1)`` seconds (with ±50% jitter), capped at ``max_delay``.
    """

    attempts: int = 4
    backoff: float = 1.0
    max_delay: float = 30.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """Read ``CZB_FETCH_ATTEMPTS`` and ``CZB_FETCH_BACKOFF`` (seconds), else the defaults."""
        return cls(
            attempts=max(1, int(os.environ.get("CZB_FETCH_ATTEMPTS", cls.attempts))),
            backoff=max(0.0, float(os.environ.get("CZB_FETCH_BACKOFF", cls.backoff))),
        )

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based)."""
        base = min(self.backoff * (2 ** (retry - 1)), self.max_delay)
        return base * (0.5 + random.random() / 2)


def with_retries(what: str, action: Callable[[], T], policy: Optional[RetryPolicy] = None) -> T:
    """Run ``action``; on a transient failure wait and run it again, up to ``policy.attempts`` times.

    A non-transient failure (``WeightStoreError``) propagates at once; the last transient one is
    raised as a ``WeightStoreError`` naming ``what`` and the number of attempts.
    """
    policy = policy or RetryPolicy.from_env()
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except _TransientError as err:
            if attempt == policy.attempts:
                raise WeightStoreError(f"{what}: {err} (gave up after {attempt} attempts)") from None
            delay = policy.delay(attempt)
            logger.warning("%s: %s; retrying in %.2fs (attempt %d of %d)", what, err, delay,
                           attempt + 1, policy.attempts)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relative_path(key: str, prefix: str) -> PurePosixPath:
    """The path of an object key below ``prefix``; refuses keys that would escape the target folder."""
    relative = key[len(prefix):].lstrip("/") if key.startswith(prefix) else key
    path = PurePosixPath(relative)
    if (not relative or path.is_absolute() or "\\" in relative
            or any(part in ("..", ".") for part in relative.split("/"))):
        raise WeightStoreError(f"refusing object key '{key}': it would be written outside the weights folder")
    return path


# -- manifest ------------------------------------------------------------------------------
def build_manifest(
    folder: Path,
    source: str,
    extra: Optional[Dict[str, Any]] = None,
    origins: Optional[Dict[str, Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """Describe every file under ``folder``: relative path, size, modification time (``mtime_ns``),
    sha256 and, from ``origins``, the object ``key`` and ``source`` URI it came from (keyed by
    relative path). The sha256 is computed here, once; inference trusts it for files whose size
    and modification time are unchanged (:func:`verify_manifest` with ``trust_unchanged``)."""
    origins = origins or {}
    files = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != WEIGHTS_MANIFEST):
        relative = path.relative_to(folder).as_posix()
        stat = path.stat()
        entry: Dict[str, Any] = {"path": relative, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                 "sha256": sha256_file(path)}
        origin = origins.get(relative, {})
        entry["key"] = origin.get("key", relative)
        entry["source"] = origin.get("source", source)
        files.append(entry)
    manifest: Dict[str, Any] = {"schema": MANIFEST_SCHEMA, "source": source, "files": files}
    manifest.update(extra or {})
    return manifest


def write_manifest(folder: Path, manifest: Dict[str, Any]) -> Path:
    """Write ``czb_manifest.json`` in ``folder`` via a temporary name (never half-written)."""
    target = Path(folder) / WEIGHTS_MANIFEST
    tmp = target.with_name(f".{WEIGHTS_MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, target)
    return target


def read_manifest(folder: Path) -> Optional[Dict[str, Any]]:
    """The manifest in ``folder``, or ``None`` when there is none or it is not valid JSON."""
    path = Path(folder) / WEIGHTS_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def unchanged_since_manifest(path: Path, entry: Dict[str, Any]) -> bool:
    """Whether a file still has the size and modification time its manifest entry recorded."""
    if "mtime_ns" not in entry:
        return False  # a manifest from before mtimes were recorded
    stat = path.stat()
    return stat.st_size == entry["size"] and stat.st_mtime_ns == int(entry["mtime_ns"])


def verify_manifest(folder: Path, require: bool = True, checksums: bool = True,
                    trust_unchanged: bool = False, rehashed: Optional[List[str]] = None) -> List[str]:
    """Problems found checking ``folder`` against its manifest (empty list: verified).

    ``require=False`` accepts a folder without a manifest (weights a user placed by hand).
    ``trust_unchanged=True`` (inference: the weights were hashed when fetched) re-reads a file's
    content only when its size or modification time differs from the manifest's (e.g. a copy that
    did not keep mtimes); the paths re-hashed are appended to ``rehashed``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    if (folder / WEIGHTS_MANIFEST).is_file() and read_manifest(folder) is None:
        return [f"{folder / WEIGHTS_MANIFEST} is not a valid manifest"]
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
        elif not checksums or (trust_unchanged and unchanged_since_manifest(path, entry)):
            continue
        else:
            if rehashed is not None:
                rehashed.append(entry["path"])
            if sha256_file(path) != entry["sha256"]:
                problems.append(f"sha256 mismatch for {entry['path']}")
    if not manifest.get("files"):
        problems.append("manifest lists no files")
    return problems


def _expected_digests(manifest: Optional[Dict[str, Any]]) -> Dict[str, Tuple[int, str]]:
    """(size, sha256) per relative path from a manifest published beside the source weights."""
    expected = {}
    for entry in (manifest or {}).get("files", []) or []:
        try:
            expected[str(entry["path"])] = (int(entry["size"]), str(entry["sha256"]))
        except (KeyError, TypeError, ValueError):
            continue
    return expected


# -- streaming to a temporary name ---------------------------------------------------------
def _stream_to_file(
    chunks: Iterable[bytes],
    tmp: Path,
    where: str,
    size: Optional[int],
    md5: Optional[str] = None,
    sha256: Optional[str] = None,
) -> None:
    """Write ``chunks`` to ``tmp`` and check byte count, MD5 and sha256 when they are known.

    A mismatch is transient (the next try may get the whole, intact object); ``tmp`` is removed.
    """
    md5_hash, sha_hash, written = hashlib.md5(), hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                md5_hash.update(chunk)
                sha_hash.update(chunk)
                written += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if size is not None and written != size:
            raise _TransientError(f"truncated download ({written} of {size} bytes)")
        if md5 and md5_hash.hexdigest() != md5:
            raise _TransientError("corrupt download (MD5 does not match the ETag)")
        if sha256 and sha_hash.hexdigest() != sha256:
            raise _TransientError("corrupt download (sha256 does not match the source manifest)")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.debug("%s: %d bytes verified", where, written)


def _part_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.part")


# -- S3 ------------------------------------------------------------------------------------
def s3_client(unsigned: Optional[bool] = None):
    """A boto3 S3 client whose requests botocore retries on throttling, 5xx and dropped connections.

    ``unsigned=True`` sends anonymous requests (public buckets), ``False`` signs them with the
    AWS credential chain, ``None`` signs when the chain finds credentials. ``AWS_ENDPOINT_URL_S3``
    (and the rest of the standard AWS environment) is honoured; ``CZB_S3_MAX_ATTEMPTS`` sets
    botocore's total attempts per request (standard retry mode, default 5).
    """
    if unsigned is None:
        unsigned = not _has_credentials()
    # Building a client costs ~0.5 s; reuse one per configuration (clients are thread-safe).
    settings = tuple(os.environ.get(name, "") for name in _CLIENT_ENV)
    return _cached_client(bool(unsigned), settings)


_CLIENT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
               "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
               "CZB_S3_MAX_ATTEMPTS")


@functools.lru_cache(maxsize=8)
def _cached_client(unsigned: bool, settings: Tuple[str, ...]):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    attempts = dict(zip(_CLIENT_ENV, settings))["CZB_S3_MAX_ATTEMPTS"] or "5"
    config = Config(
        retries={"total_max_attempts": max(1, int(attempts)), "mode": "standard"},
        signature_version=UNSIGNED if unsigned else None,
        connect_timeout=20,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", config=config)


def _has_credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


def _error_code(err: BaseException) -> Tuple[str, int]:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return "", 0
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _classify(err: BaseException, bucket: str, key: str) -> Exception:
    """Map a botocore failure to a one-line ``WeightStoreError`` or a retryable ``_TransientError``."""
    from botocore.exceptions import ClientError, NoCredentialsError

    where = f"s3://{bucket}/{key}"
    if isinstance(err, ClientError):
        code, status = _error_code(err)
        if code == "NoSuchBucket":
            return WeightStoreError(f"{where}: no such bucket '{bucket}'")
        if code in _NO_KEY_CODES or status == 404:
            return WeightStoreError(f"{where}: no such key")
        if code in _DENIED_CODES or status == 403:
            return WeightStoreError(
                f"{where}: access denied ({code or status}); check AWS credentials or the bucket policy")
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return _TransientError(f"S3 error {code or status}")
        return WeightStoreError(f"{where}: S3 error {code or status}: {err}".splitlines()[0])
    if isinstance(err, NoCredentialsError):
        return WeightStoreError(f"{where}: no AWS credentials found for a signed request")
    # Dropped connections, timeouts, short reads and failed checksums: worth another try.
    return _TransientError(f"{type(err).__name__}: {err}".splitlines()[0])


class _S3:
    """One bucket, read anonymously or signed; anonymous access falls back to the credential chain
    when the bucket refuses it and credentials exist."""

    def __init__(self, bucket: str, unsigned: Optional[bool]) -> None:
        self.bucket = bucket
        self.unsigned = _has_credentials() is False if unsigned is None else bool(unsigned)
        self.client = s3_client(self.unsigned)

    def call(self, key: str, action: Callable[[Any], T]) -> T:
        """``action(client)``, with botocore failures mapped by ``_classify``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action(self.client)
        except (ClientError, BotoCoreError) as err:
            mapped = _classify(err, self.bucket, key)
            if (self.unsigned and isinstance(mapped, WeightStoreError) and "access denied" in str(mapped)
                    and _has_credentials()):
                logger.info("s3://%s: anonymous access refused; retrying with AWS credentials", self.bucket)
                self.unsigned, self.client = False, s3_client(False)
                return self.call(key, action)
            raise mapped from None

    def list(self, prefix: str, policy: RetryPolicy) -> List[Tuple[str, int, Optional[str]]]:
        """(key, size, etag) of every object under ``prefix``, across all pages; folder markers skipped."""

        def list_all(client) -> List[Tuple[str, int, Optional[str]]]:
            objects = []
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix,
                PaginationConfig={"PageSize": int(os.environ.get("CZB_S3_PAGE_SIZE", "1000"))})
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/") or key == prefix or not key.startswith(prefix):
                        continue
                    objects.append((key, int(item["Size"]), item.get("ETag", "").strip('"') or None))
            return objects

        return with_retries(f"s3://{self.bucket}/{prefix}", lambda: self.call(prefix, list_all), policy)

    def head(self, key: str, policy: RetryPolicy) -> Optional[Tuple[str, int, Optional[str]]]:
        """(key, size, etag) of one object, or ``None`` when there is no such key."""
        try:
            head = with_retries(f"s3://{self.bucket}/{key}",
                                lambda: self.call(key, lambda c: c.head_object(Bucket=self.bucket, Key=key)), policy)
        except WeightStoreError as err:
            if str(err).endswith("no such key"):
                return None
            raise
        return key, int(head["ContentLength"]), str(head.get("ETag", "")).strip('"') or None

    def download(self, key: str, size: int, etag: Optional[str], target: Path, policy: RetryPolicy,
                 sha256: Optional[str] = None) -> None:
        """Stream one object to a temporary name, verify it, rename it to ``target``; retried whole."""
        where = f"s3://{self.bucket}/{key}"
        # A single-part ETag is the object's MD5; a multipart one ("…-N") is not.
        md5 = etag.lower() if etag and "-" not in etag and len(etag) == 32 else None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part_name(target)

        def attempt() -> None:
            def get(client):
                response = client.get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
                length = int(response.get("ContentLength", size))
                if length != size:
                    raise _TransientError(f"Content-Length {length} does not match the listed size {size}")
                body = response["Body"]
                try:
                    _stream_to_file(body.iter_chunks(_CHUNK), tmp, where, size, md5, sha256)
                finally:
                    body.close()

            try:
                self.call(key, get)
            except (WeightStoreError, _TransientError):
                raise
            except Exception as err:  # urllib3 protocol errors and the like while streaming
                tmp.unlink(missing_ok=True)
                raise _TransientError(f"{type(err).__name__}: {err}".splitlines()[0]) from None

        with_retries(where, attempt, policy)
        os.replace(tmp, target)


def list_s3_objects(client, bucket: str, prefix: str) -> List[Tuple[str, int, Optional[str]]]:
    """(key, size, etag) of every object under the prefix via ``client``, across all pages."""
    s3 = _S3.__new__(_S3)
    s3.bucket, s3.unsigned, s3.client = bucket, False, client
    return s3.list(prefix, RetryPolicy.from_env())


def _local_matches(path: Path, size: int, etag: Optional[str], sha256: Optional[str]) -> bool:
    """Whether an existing local file already holds the object (size, then MD5/sha256 when known)."""
    if not path.is_file() or path.stat().st_size != size:
        return False
    if sha256:
        return sha256_file(path) == sha256
    if etag and "-" not in etag and len(etag) == 32:
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == etag.lower()
    return True


def _sync_s3(
    bucket: str, prefix: str, local_dir: Path, unsigned: Optional[bool], policy: Optional[RetryPolicy] = None
) -> Dict[str, Dict[str, Any]]:
    """Download ``s3://bucket/prefix`` into ``local_dir``; returns origins keyed by relative path.

    ``prefix`` names a folder (``a/b`` lists ``a/b/``, never ``a/bc/``) or, when nothing lies
    below it, a single object, saved under its base name.
    """
    policy = policy or RetryPolicy.from_env()
    s3 = _S3(bucket, unsigned)
    folder = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    objects = s3.list(folder, policy)
    if not objects and folder and not prefix.endswith("/"):
        single = s3.head(prefix, policy)
        if single is None:
            raise WeightStoreError(f"s3://{bucket}/{prefix}: no such key (and no objects below {folder})")
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        objects = [single]
    if not objects:
        raise WeightStoreError(f"s3://{bucket}/{folder}: empty prefix (no objects to download)")
    planned = [(key, size, etag, safe_relative_path(key, folder)) for key, size, etag in objects]

    # A manifest published beside the weights (e.g. a mirror this pipeline filled) gives sha256s
    # that catch corruption a multipart ETag cannot.
    expected: Dict[str, Tuple[int, str]] = {}
    for key, size, etag, relative in planned:
        if relative.as_posix() == WEIGHTS_MANIFEST:
            with tempfile.TemporaryDirectory() as scratch:
                s3.download(key, size, etag, Path(scratch) / WEIGHTS_MANIFEST, policy)
                expected = _expected_digests(read_manifest(Path(scratch)))

    origins: Dict[str, Dict[str, Any]] = {}
    for key, size, etag, relative in planned:
        if relative.as_posix() == WEIGHTS_MANIFEST:
            continue
        want_size, want_sha = expected.get(relative.as_posix(), (size, None))
        if want_size != size:
            raise WeightStoreError(
                f"s3://{bucket}/{key}: listed size {size} differs from the source manifest's {want_size}")
        target = local_dir / relative
        if _local_matches(target, size, etag, want_sha):
            logger.info("s3://%s/%s: local copy verified; not downloading", bucket, key)
        else:
            logger.info("downloading s3://%s/%s (%d bytes)", bucket, key, size)
            s3.download(key, size, etag, target, policy, want_sha)
        origins[relative.as_posix()] = {"key": key, "source": f"s3://{bucket}/{key}", "etag": etag}
    return origins


def sync_s3_to_local(bucket: str, prefix: str, local_dir: str, unsigned: Optional[bool] = True) -> List[str]:
    """Copy every object under ``s3://bucket/prefix`` into ``local_dir`` (the reference's signature).

    ``unsigned=True`` (the reference default) reads anonymously and falls back to the AWS
    credential chain if the bucket refuses anonymous reads; ``None`` signs when credentials exist.
    Unlike the reference: local files are kept only when their size and checksum match the
    object; each file is written to a temporary name, verified and renamed; transient errors are
    retried; keys escaping ``local_dir`` are refused; an empty prefix is an error; and a manifest
    of what was fetched is merged into ``local_dir/czb_manifest.json``. Returns the local paths.
    """
    root = Path(local_dir)
    root.mkdir(parents=True, exist_ok=True)
    origins = _sync_s3(bucket, prefix, root, unsigned)
    source = f"s3://{bucket}/{prefix}"
    fresh = build_manifest(root, source, origins=origins)
    fresh["files"] = [entry for entry in fresh["files"] if entry["path"] in origins]
    previous = read_manifest(root) or {}
    merged = {e["path"]: e for e in previous.get("files", []) if (root / e["path"]).is_file()}
    merged.update({e["path"]: e for e in fresh["files"]})
    sources = [s for s in str(previous.get("source", "")).split() if s and s != source] + [source]
    fresh.update(source=" ".join(sources), files=[merged[p] for p in sorted(merged)])
    write_manifest(root, fresh)
    return [str(root / path) for path in sorted(origins)]


# -- other sources -------------------------------------------------------------------------
def _copy_local(source: Path, dest: Path) -> Dict[str, Dict[str, Any]]:
    """Copy a local file or folder into ``dest`` (each file via a temporary name)."""
    if source.is_file():
        files = [(source, PurePosixPath(source.name))]
    elif source.is_dir():
        files = [(p, PurePosixPath(p.relative_to(source).as_posix()))
                 for p in sorted(source.rglob("*")) if p.is_file() and p.name != WEIGHTS_MANIFEST]
        if not files:
            raise WeightStoreError(f"{source}: folder is empty")
    else:
        raise WeightStoreError(f"{source}: no such file or folder")
    origins = {}
    for path, relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part_name(target)
        try:
            shutil.copyfile(path, tmp)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise WeightStoreError(f"{path}: cannot copy ({err.strerror or err})") from None
        os.replace(tmp, target)
        origins[relative.as_posix()] = {"key": str(path), "source": str(path)}
    return origins


def _download_https(url: str, dest: Path, policy: Optional[RetryPolicy] = None) -> Dict[str, Dict[str, Any]]:
    """Download one file over HTTP(S) into ``dest``; 429/5xx and short bodies are retried."""
    import urllib.error
    import urllib.request

    name = PurePosixPath(urlparse(url).path).name or "download"
    target = dest / name
    tmp = _part_name(target)

    def attempt() -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                length = response.headers.get("Content-Length")
                chunks = iter(lambda: response.read(_CHUNK), b"")
                _stream_to_file(chunks, tmp, url, int(length) if length else None)
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _TransientError(f"HTTP {err.code}") from None
            what = {404: "not found", 403: "access denied", 401: "access denied"}.get(err.code, err.reason)
            raise WeightStoreError(f"{url}: HTTP {err.code} ({what})") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            tmp.unlink(missing_ok=True)
            # An unreachable host or a dropped connection may well work next time.
            raise _TransientError(f"{type(err).__name__}: {getattr(err, 'reason', err)}".splitlines()[0]) from None

    with_retries(url, attempt, policy)
    os.replace(tmp, target)
    return {name: {"key": url, "source": url}}


def split_s3_uri(uri: str) -> Tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise WeightStoreError(f"{uri}: not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def fill_folder(source: str, dest: Path) -> Dict[str, Dict[str, Any]]:
    """Copy the weights named by ``source`` (s3://, http(s)://, file:// or a path) into ``dest``.

    Returns where each file came from (``{relative path: {"key", "source"}}``).
    """
    parsed = urlparse(source)
    if parsed.scheme == "s3":
        bucket, prefix = split_s3_uri(source)
        return _sync_s3(bucket, prefix, Path(dest), unsigned=None)
    if parsed.scheme in ("http", "https"):
        return _download_https(source, Path(dest))
    if parsed.scheme in ("", "file"):
        return _copy_local(Path(parsed.path if parsed.scheme == "file" else source).expanduser(), Path(dest))
    raise WeightStoreError(f"{source}: unsupported weights source (use s3://, https://, file:// or a path)")


# ---- weight planning: which folder a model x variant's weights come from ---------------------------

@dataclass
class WeightsRequest:
    """What FETCH_WEIGHTS fetches for one model x variant: its sources and the cache folder name."""

    model: str
    variant: str
    weights_key: str = ""
    sources: List[List[str]] = field(default_factory=list)

    def to_json(self) -> str:
        """The request as JSON (VALIDATE writes it beside the verdict)."""
        return json.dumps(asdict(self), indent=2)


def plan_weights(model: str, variant: str, variant_config: Dict[str, Any], mirror: Optional[str],
                 base_dir: Optional[Path] = None) -> WeightsRequest:
    """The weights request of a variant: its sources (see :func:`weight_sources`) and cache key."""
    sources = weight_sources(model, variant, variant_config, mirror, base_dir=base_dir)
    if not sources:
        raise WeightStoreError(f"{model}: variant '{variant}' names no weight URIs")
    return WeightsRequest(model=model, variant=variant, weights_key=weights_key(variant, sources),
                          sources=[list(s) for s in sources])


def _local_path(uri: str, base_dir: Optional[Path] = None) -> Optional[Path]:
    """The local path a weights URI names (``file://`` or a plain path), else ``None``.

    Relative paths are taken relative to ``base_dir`` (the folder of the model's config.yaml).
    """
    parsed = urlparse(str(uri))
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme:
        return None
    path = Path(str(uri)).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def weight_sources(
    model: str,
    variant: str,
    variant_config: Dict[str, Any],
    mirror: Optional[str],
    base_dir: Optional[Path] = None,
) -> List[Tuple[str, str]]:
    """(URI, sub-folder) pairs a variant's weights come from.

    A mirror (a folder or ``s3://`` prefix laid out ``<model>/<variant>/``) replaces them all;
    a *local* mirror that has no ``<model>/<variant>`` folder falls back to the variant's own
    URIs, so a model added to the registry runs under ``-profile test`` without editing the
    mirror. Local ``model_uri``/``extra_uris`` paths may be relative to ``base_dir``.
    """
    if mirror:
        local_mirror = _local_path(mirror)
        if local_mirror is None or (local_mirror / model / variant).exists():
            return [(f"{mirror.rstrip('/')}/{model}/{variant}", "")]
    sources = []
    uris = [("", variant_config.get("model_uri"))] + list((variant_config.get("extra_uris") or {}).items())
    for subdir, uri in uris:
        if not uri:
            continue
        local = _local_path(str(uri), base_dir)
        sources.append((str(local) if local is not None else str(uri), str(subdir)))
    return sources


def weights_key(variant: str, sources: List[Tuple[str, str]]) -> str:
    """Cache folder name: the variant plus a digest of where its weights come from."""
    digest = hashlib.sha256(json.dumps(sources).encode()).hexdigest()[:10]
    return f"{variant or 'default'}-{digest}"


def _sources_text(sources: List[Tuple[str, str]]) -> str:
    return " ".join(f"{uri}->{sub or '.'}" for uri, sub in sources)


def fetch_weights(
    sources: Iterable[Tuple[str, str]],
    dest: Path,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Fetch weights into ``dest`` atomically and return its manifest.

    ``sources`` pairs a source URI with the sub-folder of ``dest`` it fills (``""``: the root),
    so a model can combine e.g. its checkpoint and a shared vocabulary. If ``dest`` already
    verifies against its manifest (same sources, sizes and sha256), nothing is downloaded;
    otherwise it is fetched anew into a temporary sibling folder that is renamed into place only
    when complete and verified. Each manifest entry records its object key and source URI.
    """
    sources = list(sources)
    if not sources:
        raise WeightStoreError(f"{dest}: no weight sources given")
    dest = Path(dest)
    source_text = _sources_text(sources)
    existing = read_manifest(dest) if dest.is_dir() else None
    if existing and existing.get("source") == source_text:
        problems = verify_manifest(dest)
        if not problems:
            logger.info("weights in %s verified against their manifest; not downloading", dest)
            return existing
        logger.warning("weights in %s failed verification (%s); downloading again", dest, problems[0])
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        origins: Dict[str, Dict[str, Any]] = {}
        for uri, sub in sources:
            target = staging / safe_relative_path(sub, "") if sub else staging
            target.mkdir(parents=True, exist_ok=True)
            for relative, origin in fill_folder(uri, target).items():
                origins[f"{sub.strip('/')}/{relative}" if sub else relative] = origin
        manifest = build_manifest(staging, source_text, extra, origins)
        write_manifest(staging, manifest)
        # The files were hashed a moment ago by build_manifest: check presence and sizes, not content again.
        problems = verify_manifest(staging, trust_unchanged=True)
        if problems:
            raise WeightStoreError(f"{source_text}: fetched weights failed verification: {problems[0]}")
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Rename ``staging`` to ``dest``, replacing an old ``dest``; if a concurrent fetch put a
    verified ``dest`` there first, keep that one."""
    old = None
    if dest.exists() or dest.is_symlink():
        # Move the stale copy aside first: a rename cannot replace a non-empty folder.
        old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
        os.replace(dest, old)
    try:
        os.replace(staging, dest)
    except OSError:
        if dest.is_dir() and not verify_manifest(dest):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            raise
    finally:
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
