"""Featurization throughput on hymenoptera: a naive PyTorch loop vs ``embed_images``.

Run: ``.venv/bin/python bench/featurize.py [--backbone NAME] [--threads N]``. Prints img/s
of both, side by side, their ratio, and ONNX Runtime vs OpenVINO (model only and full
pipeline). The one-time ONNX export is timed separately: it is cached per backbone.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from worker.ml.backbones import create_backbone
from worker.ml.features import _cpu_runner, default_cpu_runtime, embed_images, feature_onnx

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hymenoptera"


def naive(files: list[Path], backbone: str, batch_size: int) -> float:
    """timm's eval transform one image at a time, eager PyTorch, batches of 32: img/s."""
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    model, _, _ = create_backbone(backbone)
    transform = create_transform(**resolve_model_data_config(model))
    start = time.perf_counter()
    for i in range(0, len(files), batch_size):
        batch = []
        for path in files[i : i + batch_size]:
            with Image.open(path) as img:
                batch.append(transform(img.convert("RGB")))
        with torch.inference_mode():
            model(torch.stack(batch))
    return len(files) / (time.perf_counter() - start)


def model_only(path: Path, runtime: str, threads: int, size: int, rounds: int = 4) -> float:
    run = _cpu_runner(str(path), runtime, threads)
    x = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
    run(x)
    start = time.perf_counter()
    for _ in range(rounds):
        run(x)
    return 32 * rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    files = sorted(p for p in DATASET.glob("*/*/*") if p.is_file())
    items = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in files]
    print(f"{len(files)} images, backbone {args.backbone}, {args.threads} threads")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        model, pp, weights = create_backbone(args.backbone)
        start = time.perf_counter()
        onnx_path = feature_onnx(model, args.backbone, weights, pp, cache)
        print(f"one-time ONNX export: {time.perf_counter() - start:.1f} s")

        base = naive(files, args.backbone, 32)
        results = {}
        for runtime in ("onnxruntime", "openvino"):
            run_cache = cache / runtime
            (run_cache / "onnx").mkdir(parents=True)
            os.link(onnx_path, run_cache / "onnx" / onnx_path.name)
            result = embed_images(
                items, args.backbone, cache_dir=run_cache, runtime=runtime, threads=args.threads
            )
            results[runtime] = len(files) / result.seconds
            again = embed_images(items, args.backbone, cache_dir=run_cache, runtime=runtime)
            assert again.n_computed == 0
        default = default_cpu_runtime()

        print(f"\n{'':32}{'img/s':>8}{'x naive':>9}")
        print(f"{'naive (eager torch, 1-by-1)':32}{base:8.1f}{1.0:9.2f}")
        for runtime, rate in results.items():
            label = f"embed_images, {runtime}" + (" *" if runtime == default else "")
            print(f"{label:32}{rate:8.1f}{rate / base:9.2f}")
        print("(* the default on CPU; cold embedding cache, ONNX graph already exported)")
        print("\nmodel only, batch 32 (no decoding):")
        for runtime in ("onnxruntime", "openvino"):
            rate = model_only(onnx_path, runtime, args.threads, pp.input_size)
            print(f"  {runtime:12}{rate:8.1f} img/s")


if __name__ == "__main__":
    main()
