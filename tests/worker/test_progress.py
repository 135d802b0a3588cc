"""The run's time left: silent through the warm-up, then from the measured pace, smoothed."""

from __future__ import annotations

import pytest

from worker.progress import TimeLeft


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_said_before_the_pace_is_measured_then_it_is_the_real_time_left() -> None:
    clock = Clock()
    left = TimeLeft(warmup_s=4.0, min_progress=0.05, clock=clock)
    assert left.update(0.0) is None  # the first count, before the network is loaded
    clock.now += 30  # loading it is not counted against the rest
    assert left.update(0.01) is None  # the first step of work opens the window
    # 1 % a second: silent until 4 s and 5 % of the run lie in the window.
    for second in range(1, 5):
        clock.now = 130.0 + second
        assert left.update(0.01 + second * 0.01) is None
    clock.now = 135.0
    # 93.8 % to go at the measured 1.02 % a second.
    assert left.update(0.062) == pytest.approx(0.938 * 5 / 0.052)


def test_one_quick_batch_does_not_swing_the_estimate_and_it_counts_down() -> None:
    clock = Clock()
    left = TimeLeft(warmup_s=1.0, min_progress=0.01, smoothing=0.3, clock=clock)
    left.update(0.0)
    left.update(0.1)
    clock.now += 10
    first = left.update(0.2)  # 1 % a second: 80 s left
    assert first == pytest.approx(80.0)
    clock.now += 1
    jumped = left.update(0.5)  # a cached stretch: the raw pace says 20 s
    assert jumped is not None and 40 < jumped < 80
    clock.now += 5
    assert left.current() == pytest.approx(jumped - 5)
    # A new stage is measured afresh; meanwhile the estimate counts down.
    left.new_stage()
    assert left.update(0.5) == pytest.approx(jumped - 5)
