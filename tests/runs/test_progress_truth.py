"""Progress that tells the truth on a real run: the stage names its backbone and counts images,
and the time left, once shown after 20 % of the run, puts the end within 2x of the real one."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.db import session_scope
from backend.runs.models import Run
from tests.conftest import ApiUser, reset_caches
from tests.runs.conftest import execute, start_run

pytestmark = pytest.mark.slow
# lite2, the slowest bundled backbone: on a quiet machine a lite0 run of these 398 pictures is
# over in about 15 s, mostly warm-up, too short for an estimate to rest on enough of it.
BACKBONE = "tf_efficientnet_lite2"


@dataclass(frozen=True)
class Sample:
    at_s: float
    status: str
    stage: str
    detail: str | None
    unit: str
    progress: float
    eta_s: float | None


def test_time_left_is_within_2x_of_the_real_duration_after_20_percent(
    client: TestClient,
    user: ApiUser,
    hymenoptera_project: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cache of its own: the 398 pictures are really featurized, as on a first run.
    monkeypatch.setenv("AUTODL_CACHE_DIR", str(tmp_path / "fresh-cache"))
    # A one-core worker: on a fast 2-core CPU (an AMX Xeon) a lite2 run of these pictures is
    # over in about 15 s, too short for the estimate's warm-up window to end while it runs.
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    reset_caches()
    run = start_run(client, user, hymenoptera_project, backbone=BACKBONE)
    samples: list[Sample] = []
    done = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not done.wait(0.25):
            with session_scope() as session:
                row = session.get(Run, run["id"])
                assert row is not None
                samples.append(
                    Sample(
                        time.monotonic() - started,
                        row.status.value,
                        row.stage,
                        row.stage_detail,
                        row.unit,
                        row.progress,
                        row.eta_s,
                    )
                )

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert execute(run["id"]) == "succeeded"
    finally:
        done.set()
        watcher.join()
    # The estimate is of the run's end, when its result is there (status succeeded); the task
    # goes on after it with the other downloads and, on a first run, the CPU paths' check.
    duration = next(s.at_s for s in samples if s.status == "succeeded")

    featurizing = [s for s in samples if s.stage == "featurizing"]
    assert featurizing, samples
    assert all(s.detail == BACKBONE and s.unit == "images" for s in featurizing)
    assert {s.stage for s in samples} >= {"featurizing"}
    # Nothing is promised during the warm-up: no estimate before any progress.
    assert all(s.eta_s is None for s in samples if s.progress == 0)
    predicted = [s.at_s + s.eta_s for s in samples if s.progress >= 0.2 and s.eta_s is not None]
    assert predicted, f"no time left shown after 20 % of a {duration:.0f} s run"
    trace = [
        (round(s.at_s), s.stage, round(s.progress, 2), s.eta_s and round(s.eta_s)) for s in samples
    ]
    assert all(duration / 2 <= end <= duration * 2 for end in predicted), (duration, trace[::8])
    print(
        f"\nrun of {duration:.1f} s; predicted ends after 20 %: {min(predicted):.1f} to "
        f"{max(predicted):.1f} s over {len(predicted)} samples"
    )
