"""Wall time of a whole CPU Auto run on 1,500 pictures, through the API, with the embedding
cache warm for one backbone, and where the time went.

Starts ``autodl serve`` (embedded Redis, SQLite, one worker) in a temporary data dir,
uploads 1,500 pictures (all 840 of rsscn7 and 66 per class of dtd_textures: 17 labels),
runs Quick (lite0) once, which warms the cache for lite0's plain view, then times an Auto
run from POST /runs to its final event and prints its timings (featurization per backbone,
cross-validation and fit of the combined probe, ONNX export).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/auto_time.py``.
"""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from pathlib import Path

from bench.train_linear import DATASET, serving, signed_in, timed_run, wait_for_exports

DATASETS = DATASET.parent
TARGET_S = 300.0
N_IMAGES = 1500


def pictures() -> list[tuple[Path, str]]:
    """(file, arcname label/name) of the 1,500 pictures."""
    chosen: list[tuple[Path, str]] = []
    for path in sorted((DATASETS / "rsscn7").rglob("*.jpg")):
        chosen.append((path, f"{path.parent.name}/{path.parent.parent.name}-{path.name}"))
    per_class = (N_IMAGES - len(chosen)) // 10
    for label in sorted(p.name for p in (DATASETS / "dtd_textures" / "train").iterdir()):
        files = sorted((DATASETS / "dtd_textures").glob(f"*/{label}/*.jpg"))[:per_class]
        chosen += [(p, f"{label}/{p.name}") for p in files]
    return chosen[:N_IMAGES]


def zip_of(files: list[tuple[Path, str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, name in files:
            archive.write(path, name)
    return buffer.getvalue()


def main() -> int:
    import tempfile

    files = pictures()
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp) / "data") as (url, server):
        api = signed_in(url, timeout_s=1800)
        pid = api.post("/api/projects", json={"name": "auto-time"}).json()["id"]
        report = api.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("p.zip", zip_of(files), "application/zip"))],
        ).json()
        load_before = os.getloadavg()[0]
        quick_s, quick = timed_run(api, pid, "tf_efficientnet_lite0", "logreg", server.pid)
        wait_for_exports(api, quick["id"])
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        run = api.post(
            f"/api/projects/{pid}/runs",
            json={"mode": "auto", "backbone": "tf_efficientnet_lite0"},
        ).json()
        auto_s, auto = _wait(api, run["id"], started)
        load_end = os.getloadavg()[0]

    m = auto.get("metrics") or {}
    print(
        f"{len(report['accepted'])} pictures, {len(m.get('per_class', {}))} labels; "
        f"{os.cpu_count()} cores, load average {load_before:.1f} (Quick), "
        f"{load_start:.1f} → {load_end:.1f} (Auto)"
    )
    print(
        f"Quick (lite0, cold cache): {quick_s:.1f} s, accuracy {quick['metrics']['accuracy']:.3f}"
    )
    print(f"{'run':<22} {'target s':>9} {'measured s':>11} {'accuracy':>9}")
    print(
        f"{'Auto (lite0 warm)':<22} {TARGET_S:>9.0f} {auto_s:>11.1f} {m.get('accuracy', 0):>9.3f}"
    )
    model = m.get("model") or {}
    print(f"status {auto['status']}; kept: {model.get('head')} on {model.get('backbones')}")
    print("where the time went (s):")
    for key, value in sorted((m.get("timings") or {}).items(), key=lambda kv: -kv[1]):
        print(f"  {key:<40} {value:>8.1f}")
    return 0 if auto["status"] == "succeeded" else 1


def _wait(api: object, run_id: int, started: float) -> tuple[float, dict]:
    import httpx

    assert isinstance(api, httpx.Client)
    while True:
        body = api.get(f"/api/runs/{run_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return time.perf_counter() - started, body
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
