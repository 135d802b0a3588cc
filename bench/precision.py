"""Runtime and precision by measurement, per backbone: speed, feature cosine similarity and
linear-probe accuracy of ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16 (where the CPU has
it) and an int8 graph (ONNX Runtime's static quantiser), on the shared datasets.

Prints one row per candidate and the choice (``worker/ml/precision.py``: the fastest whose
linear-probe accuracy drops by at most 0.3 points on every dataset, with the candidate
throughout and as runs use it: head trained on the candidate's features, scored on fp32
validation features; and whose mean cosine similarity stays >= 0.99).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/precision.py [--per-split 120]
[--datasets hymenoptera rsscn7]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from backend.inference.preprocess import Preprocess, load_image
from worker.ml.backbones import create_backbone
from worker.ml.features import cpu_has_bf16, feature_onnx
from worker.ml.precision import Dataset, candidates, cpu_caps, measure, pick, quantize_int8

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def load(name: str, pp: Preprocess, per_split: int, threads: int) -> Dataset:
    """Up to ``per_split`` images of each of train/ and val/, spread over the labels."""

    def split(folder: str) -> tuple[np.ndarray, list[str]]:
        files = sorted(p for p in (DATASETS / name / folder).glob("*/*") if p.is_file())
        files = files[:: max(1, len(files) // per_split)][:per_split]
        with ThreadPoolExecutor(threads) as pool:
            arrays = list(pool.map(lambda p: _try(p, pp), files))
        keep = [i for i, a in enumerate(arrays) if a is not None]
        return np.stack([arrays[i] for i in keep]), [files[i].parent.name for i in keep]

    train, y_train = split("train")
    val, y_val = split("val")
    return Dataset(name, train, y_train, val, y_val)


def _try(path: Path, pp: Preprocess) -> np.ndarray | None:
    try:
        return load_image(path, pp)
    except Exception:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "rsscn7"])
    parser.add_argument("--per-split", type=int, default=120)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed-cache", type=Path, default=Path("/work/cache-bench"))
    args = parser.parse_args()
    caps = cpu_caps()
    print(f"backbone {args.backbone}; CPU {caps.model}, {caps.threads} threads, flags {caps.flags}")
    print(f"CPU bfloat16: {cpu_has_bf16()}; int8 dot products: {caps.int8}; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        model, pp, weights = create_backbone(args.backbone)
        seeded = args.seed_cache if (args.seed_cache / "onnx").is_dir() else Path(tmp)
        graph = feature_onnx(model, args.backbone, weights, pp, seeded)
        data = [load(name, pp, args.per_split, args.threads) for name in args.datasets]
        for d in data:
            print(f"{d.name}: {len(d.train)} train / {len(d.val)} val images")
        start = time.perf_counter()
        calibration = data[0].train[:64]
        int8 = quantize_int8(graph, calibration, Path(tmp) / "int8.onnx")
        print(f"int8 quantisation (64 calibration images): {time.perf_counter() - start:.0f} s")
        results = measure(candidates(graph, int8), data, args.threads, lambda n: print(f"  {n}…"))

    names = [d.name for d in data]
    head = "".join(f"{n[:12]:>14}" for n in names)
    print(f"\n{'candidate':18}{'img/s':>7}{'x f32':>7}{'cos mean':>10}{'cos min':>9}{head}  ok")
    base = results[0].img_s
    for r in results:
        accs = "".join(
            f"{r.accuracy[n]:8.1f} ({0.0 - r.loss[n]:+.1f}/{0.0 - r.mixed_loss.get(n, 0.0):+.1f})"
            for n in names
        )
        print(
            f"{r.candidate.name:18}{r.img_s:7.1f}{r.img_s / base:7.2f}{r.cosine_mean:10.4f}"
            f"{r.cosine_min:9.4f}{accs}  {'yes' if r.acceptable else 'no'}"
        )
    print(
        f"(accuracy: linear probe on val, percent, change vs onnxruntime f32 in points: "
        f"candidate throughout / trained on candidate, scored on f32 val features; "
        f"load {os.getloadavg()[0]:.1f})"
    )
    print(f"choice: {pick(results).candidate.name}")


if __name__ == "__main__":
    main()
