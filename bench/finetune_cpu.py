"""Fine-tuning on a CPU: seconds per epoch and validation accuracy on hymenoptera.

Prints the linear probe (the baseline the fine-tune starts from) and the fine-tuned
model side by side, with the machine's load average, which matters on a shared box.

    .venv/bin/python bench/finetune_cpu.py --epochs 1
    .venv/bin/python bench/finetune_cpu.py --epochs 3 --augmentation light
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "datasets" / "hymenoptera"


def dataset(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split, (path, class index) pairs; the GIF placeholder is skipped."""
    from PIL import Image

    labels = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    splits: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "val"):
        items = []
        for index, label in enumerate(labels):
            for path in sorted((root / split / label).iterdir()):
                with Image.open(path) as img:
                    if img.format == "GIF":
                        continue
                items.append((path, index))
        splits[split] = items
    return labels, splits


def linear_probe(backbone: str, splits: dict, cache_dir: Path, device: str):  # type: ignore[no-untyped-def]
    """A logistic-regression head on embeddings, its validation accuracy, featurize time."""
    import numpy as np

    from worker.ml.features import embed_images
    from worker.ml.heads import train_head

    computed = 0

    def embed(items: list[tuple[Path, int]]) -> np.ndarray:
        nonlocal computed
        pairs = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p, _ in items]
        result = embed_images(pairs, backbone, cache_dir=cache_dir, device=device)
        computed += result.n_computed
        return result.embeddings

    started = time.perf_counter()
    x_train, x_val = embed(splits["train"]), embed(splits["val"])
    featurize_s = time.perf_counter() - started
    y_train = [y for _, y in splits["train"]]
    head = train_head(x_train, y_train, "logreg")
    accuracy = float(np.mean(head.predict(x_val) == np.array([y for _, y in splits["val"]])))
    return head, accuracy, featurize_s, computed


def main(argv: list[str] | None = None, device: str = "cpu") -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--train-layers", default="last_blocks", choices=["head", "last_blocks", "all"]
    )
    parser.add_argument("--augmentation", default="light", choices=["none", "light", "strong"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from backend.runs.schemas import EpochRecord, RunOptions
    from worker.ml.finetune import finetune
    from worker.modes.finetune import finetune_config

    if not args.data.is_dir():
        raise SystemExit(f"hymenoptera not found at {args.data}")
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="autodl-bench-"))
    labels, splits = dataset(args.data)
    load_before = os.getloadavg()
    head, probe_acc, featurize_s, n_featurized = linear_probe(
        args.backbone, splits, cache_dir, device
    )
    options = RunOptions(
        train_layers=args.train_layers,
        epochs=args.epochs,
        augmentation=args.augmentation,
        batch_size=args.batch_size,
    )
    # Measure every epoch asked for (no early stopping).
    config = dataclasses.replace(finetune_config(options), device=device, patience=args.epochs)

    def show(history: list[EpochRecord]) -> None:
        print("  epoch", history[-1], flush=True)

    result = finetune(
        splits["train"], splits["val"], args.backbone, len(labels), config,
        init_head=head, on_epoch=show,
    )  # fmt: skip
    val = [y for _, y in splits["val"]]
    accuracy = float((result.val_proba.argmax(1) == torch.tensor(val).numpy()).mean())
    load_after = os.getloadavg()
    train_s = [h.seconds for h in result.history]
    figures = {
        "device": result.device,
        "backbone": args.backbone,
        "train_images": len(splits["train"]),
        "val_images": len(splits["val"]),
        # None when every embedding came from the cache (nothing was featurized).
        "featurize_images_per_s": round(n_featurized / featurize_s, 1) if n_featurized else None,
        "train_images_per_s": round(result.train_images_per_s, 1),
        "epoch_seconds": train_s,
        "total_seconds": round(result.seconds, 1),
        "batch_size": result.batch_size,
        "linear_probe_val_accuracy": round(probe_acc, 4),
        "finetune_val_accuracy": round(accuracy, 4),
        "best_epoch": result.best_epoch,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu_count": os.cpu_count(),
    }
    print(f"\n{'':28}{'linear probe':>14}{'fine-tuned':>14}")
    print(f"{'validation accuracy':28}{probe_acc:>14.2%}{accuracy:>14.2%}")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return figures


if __name__ == "__main__":
    main()
