"""Worker memory while featurizing 5,000 images: it must stay flat (target < 2 GB).

Featurizes the hymenoptera files over and over under distinct cache keys (so every one
is decoded and run through the network again) and samples the process's resident memory.
Printed beside it: what holding every decoded image at once would take.

Run: ``.venv/bin/python bench/featurize_memory.py [--images 5000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import threading
import time
from pathlib import Path

import psutil

from worker.ml.features import embed_images

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hymenoptera"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    args = parser.parse_args()
    files = sorted(p for p in DATASET.rglob("*.jpg"))
    items = [
        (hashlib.sha256(f"{i}:{files[i % len(files)]}".encode()).hexdigest(), files[i % len(files)])
        for i in range(args.images)
    ]
    process = psutil.Process()
    peak = 0
    samples: list[tuple[int, int]] = []
    done = threading.Event()
    progress = {"n": 0}

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            rss = process.memory_info().rss
            peak = max(peak, rss)
            samples.append((progress["n"], rss))

    with tempfile.TemporaryDirectory() as cache:
        # Warm-up: import, load weights and export the feature graph before measuring.
        embed_images(items[:8], args.backbone, cache_dir=Path(cache))
        baseline = process.memory_info().rss
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        started = time.perf_counter()
        result = embed_images(
            items,
            args.backbone,
            cache_dir=Path(cache),
            progress=lambda n, total: progress.__setitem__("n", n),
        )
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()

    def mb(n: float) -> str:
        return f"{n / 1024**2:,.0f} MB"

    decoded_all = args.images * 3 * 224 * 224 * 4
    quarter = [rss for n, rss in samples if n <= args.images // 4]
    print(
        f"{args.images} images featurized ({result.n_computed} computed) in {seconds:.0f} s, "
        f"{args.images / seconds:.1f} img/s"
    )
    print(f"{'':<44}{'memory':>12}")
    print(f"{'holding every decoded image (baseline)':<44}{mb(decoded_all):>12}")
    print(f"{'worker RSS before featurizing':<44}{mb(baseline):>12}")
    print(f"{'worker RSS peak after 1/4 of the images':<44}{mb(max(quarter or [0])):>12}")
    print(f"{'worker RSS peak over all images':<44}{mb(peak):>12}")
    print(f"target: under 2,048 MB -> {'met' if peak < 2 * 1024**3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
