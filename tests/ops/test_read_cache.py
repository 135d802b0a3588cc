"""The read cache of object storage stays under its bound, dropping the least recently used."""

from __future__ import annotations

import os
import time
from pathlib import Path

from backend.storage import LocalStorage, ReadCache


def test_read_cache_drops_the_least_recently_used_past_its_bound(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path / "cache", max_bytes=10_000)
    paths = []
    for i in range(3):
        path = cache.path(f"images/aa/{i}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 3_000)
        past = time.time() - 100 + i
        os.utime(path, (past, past))
        paths.append(path)
        cache.added(3_000)
    cache.touch(paths[0])  # read again: now the most recent
    cache.path("images/aa/3").write_bytes(b"x" * 3_000)
    cache.added(3_000)  # 12,000 bytes > 10,000: trimmed to at most 80 %
    kept = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file()) <= 8_000
    assert kept == ["0", "3"]


def test_local_storage_is_the_data_dir_as_laid_out_before(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    source = tmp_path / "tmp" / "upload.part"
    source.parent.mkdir()
    source.write_bytes(b"image")
    storage.publish("images/ab/abc", source)
    assert (tmp_path / "images" / "ab" / "abc").read_bytes() == b"image"
    assert storage.local_path("images/ab/abc") == tmp_path / "images" / "ab" / "abc"
    recorded = storage.record("artifacts/run-1/model.onnx", tmp_path / "artifacts/run-1/model.onnx")
    assert Path(recorded).is_absolute()  # rows keep absolute paths, as they always did
