"""Concurrent predictions in one process: onnxruntime's spinning intra-op threads (its
default) against the classifier's setting (no spinning).

Loads ``--models`` copies of one exported classifier (the API caches one per run), then
``--threads`` threads each classify ``--runs`` pictures on them, as concurrent
``POST /api/runs/{rid}/predict`` requests do. Prints wall time, median and p99 latency for
both, twice each, alternating (the machine is shared).

Run: ``.venv/bin/python bench/predict_threads.py DATA_DIR/artifacts/run-N/model.onnx``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.inference.predictor import OnnxClassifier


def measure(model: Path, spin: bool, models: int, threads: int, runs: int) -> tuple[float, ...]:
    classifiers = [OnnxClassifier(model, spin=spin) for _ in range(models)]
    first = classifiers[0].session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    latencies: list[float] = []

    def work(n: int) -> None:
        classifier = classifiers[n % models]
        for _ in range(runs):
            started = time.perf_counter()
            classifier.predict_arrays(batch)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return wall, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{args.threads} threads x {args.runs} predictions on {args.models} models")
    for _ in range(2):
        for label, spin in (
            ("baseline: spinning (ort default)", True),
            ("ours: no spinning", False),
        ):
            wall, median, p99 = measure(args.model, spin, args.models, args.threads, args.runs)
            print(
                f"{label:<34} wall {wall:5.2f} s  median {median * 1e3:4.0f} ms  "
                f"p99 {p99 * 1e3:4.0f} ms"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
