"""Where files live: one interface, two implementations, and the content-addressed images.

- :class:`LocalStorage` (the default): the data directory itself, laid out as always
  (``images/ab/<sha>``, ``thumbnails/ab/<sha>.jpg``, ``artifacts/run-N/...``).
- :class:`S3Storage` (``AUTODL_STORAGE_URL=s3://bucket/prefix``): an S3-compatible object
  store through boto3, whose endpoint and credentials come from the standard AWS variables
  (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``).
  Each process keeps a bounded local read cache of the objects it reads
  (``AUTODL_STORAGE_CACHE_MB``), so API processes and workers on other machines share
  nothing but the bucket.

Code asks :func:`get_storage` for a *local path* of a key (fetched into the read cache when
the bytes live elsewhere) and *publishes* files it wrote locally under a key. The workers'
embedding cache and feature graphs stay in their cache dir and, on S3, are shared through
the bucket's ``cache/`` (:func:`fetch_cached`, :func:`share_cached`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Protocol

from backend.config import Settings, get_settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it is renamed into place only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_atomic(final: Path, source: IO[bytes]) -> None:
    with atomic_path(final) as tmp, tmp.open("wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            out.write(chunk)


class FileTooLarge(Exception):
    """A streamed file went past the byte limit it was staged with."""


@dataclass(frozen=True)
class StagedFile:
    """Bytes copied to a private temporary file, with their SHA-256 and size."""

    path: Path
    sha256: str
    size: int


class Storage(Protocol):
    """Files under keys such as ``images/ab/<sha>`` or ``artifacts/run-5/model.onnx``."""

    def local_path(self, key: str) -> Path:
        """A local file holding the key's bytes (it does not exist if the key does not)."""
        ...

    def publish(self, key: str, source: Path) -> None:
        """Store ``source`` (a complete local file, moved or copied) under ``key``."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def record(self, key: str, local: Path) -> str:
        """What to store in a row that names this file (a path or a key)."""
        ...

    def resolve(self, recorded: str) -> Path:
        """The local file of a value :meth:`record` returned (old rows hold paths)."""
        ...


class LocalStorage:
    """The data directory: keys are paths under it; nothing is copied."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, key: str) -> Path:
        return self.root / key

    def publish(self, key: str, source: Path) -> None:
        target = self.root / key
        if source.resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def record(self, key: str, local: Path) -> str:
        return str(local.resolve())  # rows hold absolute paths, as they always have

    def resolve(self, recorded: str) -> Path:
        path = Path(recorded)
        return path if path.is_absolute() else self.root / recorded


class ReadCache:
    """A bounded folder of fetched objects: the least recently used go first."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = root, max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None

    def path(self, key: str) -> Path:
        return self.root / key

    def touch(self, path: Path) -> None:
        os.utime(path)

    def added(self, nbytes: int) -> None:
        with self._lock:
            if self._size is None:
                self._size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
            else:
                self._size += nbytes
            if self._size <= self.max_bytes:
                return
            files = sorted(
                (p for p in self.root.rglob("*") if p.is_file() and not p.name.endswith(".part")),
                key=lambda p: p.stat().st_mtime,
            )
            self._size = sum(p.stat().st_size for p in files)
            for path in files:
                if self._size <= self.max_bytes * 0.8:
                    break
                self._size -= path.stat().st_size
                path.unlink(missing_ok=True)


class S3Storage:
    """An S3 bucket (or MinIO, Ceph, R2...), with a local read cache."""

    def __init__(self, url: str, cache: ReadCache, client: Any = None) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError("AUTODL_STORAGE_URL must look like s3://bucket or s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.cache = cache
        self.client = client or boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def local_path(self, key: str) -> Path:
        from botocore.exceptions import ClientError

        path = self.cache.path(key)
        if path.is_file():
            self.cache.touch(path)
            return path
        try:
            with atomic_path(path) as tmp:
                self.client.download_file(self.bucket, self._key(key), str(tmp))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return path  # does not exist here either
            raise
        self.cache.added(path.stat().st_size)
        return path

    def download_to(self, key: str, local: Path) -> bool:
        """Fetch ``key`` into ``local`` (not the read cache); False if there is no such key."""
        from botocore.exceptions import ClientError

        try:
            with atomic_path(local) as tmp:
                self.client.download_file(self.bucket, self._key(key), str(tmp))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def upload(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))

    def publish(self, key: str, source: Path) -> None:
        self.upload(key, source)
        cached = self.cache.path(key)
        if source.resolve() != cached.resolve():
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, cached)  # this process will likely read it again
            self.cache.added(cached.stat().st_size)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        self.cache.path(key).unlink(missing_ok=True)

    def keys_older_than(self, prefix: str, cutoff: float) -> Iterator[str]:
        """Keys (relative to the store's prefix) of the objects under ``prefix`` last
        written before ``cutoff`` (a Unix time)."""
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self._key(""))
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                if item["LastModified"].timestamp() < cutoff:
                    yield item["Key"][skip:]

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        shutil.rmtree(self.cache.path(prefix), ignore_errors=True)

    def record(self, key: str, local: Path) -> str:
        return key

    def resolve(self, recorded: str) -> Path:
        path = Path(recorded)
        return path if path.is_absolute() else self.local_path(recorded)

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def storage_for(settings: Settings) -> Storage:
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.data_dir)
    if url.startswith("s3://"):
        cache = ReadCache(settings.data_dir / "storage-cache", settings.storage_cache_mb * 1024**2)
        return S3Storage(url, cache)
    raise ValueError(f"AUTODL_STORAGE_URL must be empty (the data dir) or s3://..., not {url!r}")


@lru_cache
def get_storage() -> Storage:
    return storage_for(get_settings())


def artifact_key(run_id: int, name: str) -> str:
    return f"artifacts/run-{run_id}/{name}"


def publish_run_file(run_id: int, local: Path) -> str:
    """Store a file a worker wrote under its run's folder; returns what its row records."""
    storage = get_storage()
    relative = local.resolve().relative_to(get_settings().run_dir(run_id).resolve())
    key = artifact_key(run_id, relative.as_posix())
    storage.publish(key, local)
    return storage.record(key, local)


def _cache_key(local: Path, cache_root: Path) -> str:
    return "cache/" + local.resolve().relative_to(Path(cache_root).resolve()).as_posix()


def fetch_cached(local: Path, cache_root: Path) -> bool:
    """The embedding cache and feature graphs: with object storage, a file missing from this
    worker's ``cache_root`` is fetched from the bucket (``cache/...``) if another worker
    stored it there. True if ``local`` exists now. A store that cannot be reached is a miss
    (the file is computed again), never an error."""
    if local.exists():
        return True
    storage = get_storage()
    if not isinstance(storage, S3Storage):
        return False
    try:
        return storage.download_to(_cache_key(local, cache_root), local)
    except Exception as exc:
        log.warning("could not fetch %s from the object store: %s", local.name, exc)
        return False


def share_cached(local: Path, cache_root: Path) -> None:
    """Store a file this worker added to its cache in the bucket, for the other workers."""
    storage = get_storage()
    if not isinstance(storage, S3Storage):
        return
    try:
        storage.upload(_cache_key(local, cache_root), local)
    except Exception as exc:
        log.warning("could not store %s in the object store: %s", local.name, exc)


def recorded_file(recorded: str) -> Path:
    """The local file of a row's path or key (fetched into the read cache if need be)."""
    return get_storage().resolve(recorded)


def recorded_exists(recorded: str) -> bool:
    """Whether a row's file is there, without fetching it: a local path is checked; a key is
    only ever recorded once its object is stored whole."""
    path = Path(recorded)
    return path.is_file() if path.is_absolute() else True


class ImageStore:
    """Image bytes stored once per SHA-256, fanned out into 256 folders."""

    def __init__(self, settings: Settings) -> None:
        self.storage = get_storage() if settings is get_settings() else storage_for(settings)
        self.tmp_dir = settings.tmp_dir

    @staticmethod
    def blob_key(sha256: str) -> str:
        return f"images/{sha256[:2]}/{sha256}"

    @staticmethod
    def thumbnail_key(sha256: str) -> str:
        return f"thumbnails/{sha256[:2]}/{sha256}.jpg"

    def blob_path(self, sha256: str) -> Path:
        return self.storage.local_path(self.blob_key(sha256))

    def thumbnail_path(self, sha256: str) -> Path:
        return self.storage.local_path(self.thumbnail_key(sha256))

    def has(self, sha256: str) -> bool:
        return self.storage.exists(self.blob_key(sha256)) and self.storage.exists(
            self.thumbnail_key(sha256)
        )

    @contextmanager
    def stage(self, source: IO[bytes], max_bytes: int) -> Iterator[StagedFile]:
        """Copy ``source`` in chunks to a temporary file while hashing it; removed on exit.

        Reads at most ``max_bytes + 1`` bytes, so a lying or endless source stops early
        with ``FileTooLarge``.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="upload.", suffix=".part", dir=self.tmp_dir)
        path = Path(tmp)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(min(CHUNK_BYTES, max_bytes + 1 - size)):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileTooLarge()
                    digest.update(chunk)
                    out.write(chunk)
            yield StagedFile(path, digest.hexdigest(), size)
        finally:
            path.unlink(missing_ok=True)

    def put(self, staged: StagedFile, thumbnail_jpeg: bytes) -> None:
        """Keep a staged file under its hash, thumbnail first, each stored whole.

        The staged file is stored even when the blob exists: identical bytes, and a blob
        removed meanwhile by a concurrent delete comes back.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=self.tmp_dir, prefix="thumbnail.", suffix=".part", delete=False
        ) as out:
            thumbnail = Path(out.name)
            out.write(thumbnail_jpeg)
        try:
            self.storage.publish(self.thumbnail_key(staged.sha256), thumbnail)
        finally:
            thumbnail.unlink(missing_ok=True)
        self.storage.publish(self.blob_key(staged.sha256), staged.path)

    def remove(self, sha256: str) -> None:
        self.storage.delete(self.blob_key(sha256))
        self.storage.delete(self.thumbnail_key(sha256))
