"""Fine-tuning on a CUDA GPU: training and featurization images/s and validation accuracy.

One short device check, in two parts:

1. featurization with the JPEGs decoded on the GPU (``torchvision.io.decode_jpeg`` on CUDA,
   a batch of files at once), resized and center-cropped there with the backbone's eval
   preprocessing, the network in bf16 autocast and channels_last: img/s (hymenoptera
   repeated to ``--featurize-images``), max feature difference to fp32 and peak memory;
2. fine-tuning tf_efficientnet_lite0 on hymenoptera for a few epochs (``finetune`` with AMP
   bf16 where the GPU has it, channels_last, pinned parallel loading, the largest batch that
   fits), beside the linear probe it starts from, with peak memory and accuracy.

Targets on an H100 (issue 15): featurize >= 3,000 img/s, fine-tune lite0 >= 1,500 img/s.
Exits with a clear message (status 2) when there is no CUDA device.

    PYTHONPATH=$PWD .venv/bin/python bench/finetune_gpu.py --epochs 3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


def gpu_featurize(backbone: str, n_images: int, batch: int = 256) -> dict[str, float]:
    """img/s of GPU-decoded, GPU-preprocessed, bf16 featurization; peak memory; bf16 error."""
    import torch
    from torchvision.io import decode_jpeg
    from torchvision.transforms.v2 import functional as F

    from worker.ml.backbones import create_backbone

    model, pp, _ = create_backbone(backbone)
    model = model.cuda().eval().to(memory_format=torch.channels_last)
    files = sorted(p for p in HYMENOPTERA.glob("*/*/*.jpg"))
    jpegs = [data for data in (p.read_bytes() for p in files) if data[:2] == b"\xff\xd8"]
    raw = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in jpegs]  # no GIF
    raw = (raw * (n_images // len(raw) + 1))[:n_images]
    mean = torch.tensor(pp.mean, device="cuda").view(1, 3, 1, 1)
    std = torch.tensor(pp.std, device="cuda").view(1, 3, 1, 1)
    resample = (
        F.InterpolationMode.BICUBIC
        if pp.interpolation == "bicubic"
        else F.InterpolationMode.BILINEAR
    )

    def prepare(chunk: list[torch.Tensor]) -> torch.Tensor:
        decoded = decode_jpeg(chunk, device="cuda")  # a list of (3, H, W) uint8 on the GPU
        crops = [
            F.center_crop(
                F.resize(img, [pp.resize_size], interpolation=resample, antialias=True),
                [pp.input_size],
            )
            for img in decoded
        ]
        x = torch.stack(crops).float().div_(255)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def run(x: torch.Tensor, bf16: bool) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return model(x).float()

    check = prepare(raw[:batch])
    error = float((run(check, True) - run(check, False)).abs().max())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(0, len(raw), batch):
        run(prepare(raw[i : i + batch]), True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "img_s": len(raw) / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "bf16_max_abs_diff": error,
        "batch": batch,
        "images": len(raw),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    if not torch.cuda.is_available():
        print(
            "bench/finetune_gpu.py: no CUDA device is visible (torch.cuda.is_available() is "
            "False); run it on a GPU machine, or bench/finetune_cpu.py here.",
            file=sys.stderr,
        )
        return 2
    from finetune_cpu import main as run_bench

    print(f"GPU: {torch.cuda.get_device_name(0)}  (torch {torch.__version__})")
    argv = list(sys.argv[1:] if argv is None else argv)
    n_featurize = 20_000
    if "--featurize-images" in argv:
        at = argv.index("--featurize-images")
        n_featurize = int(argv[at + 1])
        del argv[at : at + 2]
    feat = gpu_featurize("tf_efficientnet_lite0", n_featurize)
    print(
        f"featurization, GPU JPEG decode + bf16: {feat['img_s']:.0f} img/s "
        f"({feat['images']} images, batch {feat['batch']}, peak {feat['peak_gib']:.2f} GiB, "
        f"max |bf16 - fp32| {feat['bf16_max_abs_diff']:.3f}); target >= 3,000 img/s on an H100"
    )
    if "--epochs" not in argv:
        argv += ["--epochs", "3"]
    torch.cuda.reset_peak_memory_stats()
    figures = run_bench(argv, device="cuda")
    print(f"fine-tuning peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(
        f"\nGPU {torch.cuda.get_device_name(0)}: training {figures['train_images_per_s']} img/s, "
        f"featurization {figures['featurize_images_per_s']} img/s, validation accuracy "
        f"{figures['finetune_val_accuracy']:.2%} (linear probe "
        f"{figures['linear_probe_val_accuracy']:.2%}), batch {figures['batch_size']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
