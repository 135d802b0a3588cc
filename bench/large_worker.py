"""The worker's side of the 100,000-image project (called by ``bench/large_project.py``):
a Quick run and the health report, each in a child process as a pool process runs them,
with the child's resident memory sampled over time and its peak.

Embeddings: the first ``real`` images are featurized for real inside the run (the RSS
curve of that stretch shows whether featurizing grows with N); every other image is
**seeded**: its stored file is the photo it was cropped from and its cache entry that
photo's real embedding (computed by ``embed_images`` on it, in the run's cache key), so
the run reads it from the cache as after an upload and the export's check against stored
files holds. Its thumbnail (what the doctor's signatures read) stays the 64x48 crop.
Seeded rows repeat one vector per source photo (64 crops each), which is not what 100,000
distinct photos would give: the doctor's near-duplicate search sees far more candidates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass
class Sampled:
    """A child process's resident memory over time, and what it printed."""

    seconds: float
    peak_mb: float  # the kernel's high-water mark (ru_maxrss), printed by the child
    curve: list[tuple[float, float, str]] = field(default_factory=list)  # (s, MB, stage)
    output: str = ""
    returncode: int = 0

    def at_stage(self, stage: str) -> list[float]:
        return [mb for _, mb, s in self.curve if s == stage]


def run_sampled(code: str, stage: Callable[[], str], every_s: float = 0.5) -> Sampled:
    """Run ``code`` in a child Python (this environment, this data dir) and sample its RSS
    every ``every_s`` with ``stage()`` (read from the database) beside each sample."""
    tail = "import resource; print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code) + "\n" + tail],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    process = psutil.Process(child.pid)
    started = time.perf_counter()
    curve: list[tuple[float, float, str]] = []
    while child.poll() is None:
        try:
            rss = process.memory_info().rss / MB
        except psutil.NoSuchProcess:
            break
        try:
            now = stage()
        except Exception:  # the child holds the database: keep the last stage
            now = curve[-1][2] if curve else "?"
        curve.append((time.perf_counter() - started, rss, now))
        time.sleep(every_s)
    output = child.stdout.read() if child.stdout else ""
    child.wait()
    peak = next(
        (
            float(line.split()[1]) / 1024
            for line in output.splitlines()
            if line.startswith("PEAK_KB")
        ),
        float("nan"),
    )
    return Sampled(time.perf_counter() - started, peak, curve, output, child.returncode)


def seed_embeddings(
    shas: list[str], sources: list[Path], source_of: list[int], backbone: str, real: int
) -> tuple[int, float]:
    """Cache entries for images ``real`` onwards: the real embedding of each one's source
    photo. Returns (images seeded, seconds)."""
    from backend.config import get_settings
    from worker.ml.features import EmbeddingCache, cache_key, embed_images

    settings = get_settings()
    started = time.perf_counter()
    used = sorted(set(source_of[real:]))
    photos = embed_images(
        [(f"source-{k}", sources[k]) for k in used],
        backbone,
        cache_dir=settings.cache_dir,
        weights_dir=settings.weights_dir,
        offline=settings.hf_offline,
    )
    vector = dict(zip(used, photos.embeddings, strict=True))
    cache = EmbeddingCache(
        settings.cache_dir, cache_key(backbone, photos.weights, photos.preprocess)
    )
    for sha, k in zip(shas[real:], source_of[real:], strict=True):
        cache.put(sha, vector[k])
    return len(shas) - real, time.perf_counter() - started


QUICK_RUN = """
import json, time
from worker.pipeline import execute_run
import torch, timm  # a pool process has them imported before it forks
started = time.perf_counter()
print('OUTCOME', execute_run({run_id}))
print('SECONDS', time.perf_counter() - started)
"""

HEALTH = """
import time
from worker.health import examine_project
import torch, timm
started = time.perf_counter()
print('OUTCOME', examine_project({project_id}, {generation}))
print('SECONDS', time.perf_counter() - started)
"""


def quick_run(project_id: int, backbone: str) -> tuple[int, Sampled]:
    """A Quick (linear, logreg) run of the project, trained by ``execute_run`` in a child."""
    from backend.db import session_scope
    from backend.runs import transitions
    from backend.runs.models import Run
    from backend.runs.schemas import RunIn

    with session_scope() as session:
        run_id = transitions.create(session, project_id, RunIn(backbone=backbone)).id

    def stage() -> str:
        with session_scope() as session:
            run = session.get(Run, run_id)
            return f"{run.status}:{run.stage}" if run else "?"

    return run_id, run_sampled(QUICK_RUN.format(run_id=run_id), stage)


def health_report(project_id: int) -> Sampled:
    """One generation of the project's health report, computed by ``examine_project``."""
    from sqlalchemy import select

    from backend.db import session_scope, utcnow
    from backend.health.models import HealthReport

    with session_scope() as session:
        row = session.scalar(select(HealthReport).where(HealthReport.project_id == project_id))
        if row is None:
            row = HealthReport(project_id=project_id, requested=0, computed=0, estimates=[])
            session.add(row)
        row.requested += 1
        row.status, row.stage, row.heartbeat_at = "computing", "queued", utcnow()
        generation = row.requested

    def stage() -> str:
        with session_scope() as session:
            found = session.scalar(
                select(HealthReport.stage).where(HealthReport.project_id == project_id)
            )
            return str(found)

    return run_sampled(HEALTH.format(project_id=project_id, generation=generation), stage)


def _report_row() -> tuple[dict[str, Any], int]:
    import json

    from sqlalchemy import select

    from backend.db import session_scope
    from backend.health.models import HealthReport

    with session_scope() as session:
        report = session.scalar(select(HealthReport.report)) or {}
    return report, len(json.dumps(report))


def stored_report_kib(project_id: int) -> float:
    """Size of the stored report's JSON (the bench's data dir holds one project)."""
    return _report_row()[1] / 1024


def report_timings(project_id: int) -> Any:
    return _report_row()[0].get("timings")


def describe(name: str, sampled: Sampled) -> list[str]:
    """Peak, and the RSS at the start, middle and end of each stage, in one block."""
    sampled_max = max((mb for _, mb, _ in sampled.curve), default=float("nan"))
    lines = [
        f"{name}: {sampled.seconds:.0f} s, exit {sampled.returncode}, peak RSS "
        f"{sampled.peak_mb:.0f} MB (ru_maxrss), max sampled {sampled_max:.0f} MB"
    ]
    stages: list[str] = []
    for _, _, s in sampled.curve:
        if not stages or stages[-1] != s:
            stages.append(s)
    for s in stages:
        points = [(t, mb) for t, mb, st in sampled.curve if st == s]
        quartiles = " -> ".join(
            f"{points[min(len(points) - 1, q * len(points) // 4)][1]:.0f}" for q in range(5)
        )
        lines.append(
            f"  {s:28} {points[0][0]:6.0f}-{points[-1][0]:6.0f} s  RSS {quartiles} MB "
            f"(start, quartiles, end; max {max(mb for _, mb in points):.0f})"
        )
    return lines
