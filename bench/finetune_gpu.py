"""Fine-tuning on a CUDA GPU: training and featurization images/s and validation accuracy.

One short device check: tf_efficientnet_lite0 on hymenoptera for a few epochs (autocast,
channels_last, pinned parallel loading, largest batch that fits), beside the linear probe
it starts from. Exits with a clear message when there is no CUDA device.

    .venv/bin/python bench/finetune_gpu.py --epochs 3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    if "--epochs" not in argv:
        argv += ["--epochs", "3"]
    figures = run_bench(argv, device="cuda")
    print(
        f"\nGPU {torch.cuda.get_device_name(0)}: training {figures['train_images_per_s']} img/s, "
        f"featurization {figures['featurize_images_per_s']} img/s, validation accuracy "
        f"{figures['finetune_val_accuracy']:.2%} (linear probe "
        f"{figures['linear_probe_val_accuracy']:.2%}), batch {figures['batch_size']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
