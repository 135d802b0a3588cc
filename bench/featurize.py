"""Featurization at the bound: decode cost, model-only rate, the bound they set, and
``embed_images`` end to end, for the hymenoptera photos and for 12-megapixel JPEGs.

Decoding and the network share the same cores, so with ``d`` images/s decoded on every core
and ``m`` images/s through the model on every core, no pipeline beats
``bound = 1 / (1/m + 1/d)``. All three rates are measured here in wall time, in the same
run and under the same load (decode and model-only both before and after the end-to-end
pass, averaged), so the ratio end-to-end / bound is what to read on a busy machine.

The 12-MP JPEGs are hymenoptera photos upscaled to 4000x3000 and re-encoded (quality 90) in
a temporary folder. Their decode is printed both ways: full-size (what a plain
``Image.open().convert()`` costs) and with DCT-domain draft decoding (what featurization
does: PIL ``Image.draft`` lets libjpeg scale by 1/2, 1/4 or 1/8 while decoding).

Run: ``PYTHONPATH=$PWD .venv/bin/python bench/featurize.py [--big 64] [--naive 64]``.
``--naive N`` also times timm's eager PyTorch loop on N photos (the old baseline).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from backend.inference.preprocess import Preprocess, load_image, open_rgb
from bench.photos import hymenoptera_files, phone_jpegs, sha_items
from worker.ml.backbones import create_backbone
from worker.ml.features import _cpu_runner, embed_images, feature_onnx

BACKBONE = "tf_efficientnet_lite0"


def decode_rate(files: list[Path], pp: Preprocess, threads: int) -> tuple[float, float]:
    """(images/s on ``threads`` threads, CPU ms per image) of ``load_image``."""
    cpu, start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda p: load_image(p, pp), files):
            pass
    wall = time.perf_counter() - start
    return len(files) / wall, 1000 * (time.process_time() - cpu) / len(files)


def full_decode_ms(files: list[Path]) -> float:
    """CPU ms per image of a full-size decode to RGB (no draft), one thread."""
    cpu = time.process_time()
    for path in files:
        open_rgb(path)
    return 1000 * (time.process_time() - cpu) / len(files)


def model_rate(onnx: Path, threads: int, size: int, rounds: int = 6) -> float:
    """Images/s of the ONNX Runtime fp32 graph alone, batch 32 (the pipeline's batch)."""
    run = _cpu_runner(str(onnx), "onnxruntime", threads)
    x = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
    run(x)
    start = time.perf_counter()
    for _ in range(rounds):
        run(x)
    return 32 * rounds / (time.perf_counter() - start)


def end_to_end(files: list[Path], cache: Path, threads: int) -> float:
    """Images/s of ``embed_images`` on a cold embedding cache, in a process that has
    featurized before (graph exported, its session compiled: a worker after its first run)."""
    shutil.rmtree(cache / "embeddings", ignore_errors=True)
    result = embed_images(sha_items(files), BACKBONE, cache_dir=cache, threads=threads)
    assert result.n_computed == len(files) - len(result.failed)
    return len(files) / result.seconds


def naive(files: list[Path], batch_size: int = 32) -> float:
    """timm's eval transform one image at a time, eager PyTorch, batches of 32: img/s."""
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    model, _, _ = create_backbone(BACKBONE)
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


def measure(name: str, files: list[Path], onnx: Path, cache: Path, pp: Preprocess, threads: int):
    d1, ms = decode_rate(files, pp, threads)
    m1 = model_rate(onnx, threads, pp.input_size)
    e2e = end_to_end(files, cache, threads)
    d2, ms2 = decode_rate(files, pp, threads)
    m2 = model_rate(onnx, threads, pp.input_size)
    decode, model = (d1 + d2) / 2, (m1 + m2) / 2
    bound = 1 / (1 / model + 1 / decode)
    return {
        "decode_ms": (ms + ms2) / 2,
        "decode": decode,
        "model": model,
        "bound": bound,
        "e2e": e2e,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--big", type=int, default=64, help="12-MP JPEGs to make (0: none)")
    parser.add_argument(
        "--seed-cache", type=Path, default=Path("/work/cache-bench"), help="exported graphs to copy"
    )
    parser.add_argument("--naive", type=int, default=0, help="photos for the eager baseline")
    args = parser.parse_args()
    photos = hymenoptera_files()
    print(f"backbone {BACKBONE}, {args.threads} threads, {os.cpu_count()} CPUs")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        model, pp, weights = create_backbone(BACKBONE)
        if args.seed_cache and (args.seed_cache / "onnx").is_dir():
            shutil.copytree(args.seed_cache / "onnx", cache / "onnx")
        start = time.perf_counter()
        onnx = feature_onnx(model, BACKBONE, weights, pp, cache)
        print(
            f"one-time ONNX export (or copy from --seed-cache): {time.perf_counter() - start:.1f} s"
        )
        embed_images(sha_items(photos[:1]), BACKBONE, cache_dir=cache)  # the backbone's facts
        sets = {"hymenoptera": photos}
        if args.big:
            start = time.perf_counter()
            sets["12-MP JPEG"] = phone_jpegs(root / "big", args.big)
            big = sets["12-MP JPEG"]
            mb = sum(p.stat().st_size for p in big) / len(big) / 1e6
            print(
                f"made {len(big)} 12-MP JPEGs ({mb:.1f} MB each) "
                f"in {time.perf_counter() - start:.0f} s"
            )
        rows = {
            name: measure(name, files, onnx, cache, pp, args.threads)
            for name, files in sets.items()
        }

        print(
            f"\n{'images':14}{'decode ms':>10}{'decode/s':>10}{'model/s':>9}{'bound':>8}"
            f"{'e2e/s':>8}{'of bound':>10}{'load':>7}"
        )
        for name, r in rows.items():
            print(
                f"{name:14}{r['decode_ms']:10.1f}{r['decode']:10.1f}{r['model']:9.1f}"
                f"{r['bound']:8.1f}{r['e2e']:8.1f}{r['e2e'] / r['bound']:10.0%}{r['load']:7.2f}"
            )
        print(
            "(decode ms: CPU per image, draft decoding on; decode/s and model/s on all threads;"
            " e2e: embed_images, cold embedding cache)"
        )
        if args.big:
            big = sets["12-MP JPEG"][:16]
            print(
                f"\n12-MP decode without draft: {full_decode_ms(big):.1f} ms CPU per image, "
                f"with draft + preprocessing: {rows['12-MP JPEG']['decode_ms']:.1f} ms"
            )
        if args.naive:
            rate = naive(photos[: args.naive])
            print(
                f"\nnaive eager PyTorch loop ({args.naive} photos): {rate:.1f} img/s; "
                f"embed_images is {rows['hymenoptera']['e2e'] / rate:.1f}x"
            )


if __name__ == "__main__":
    main()
