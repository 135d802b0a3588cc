"""Classify pictures with this autodl model: Python 3.10+ with onnxruntime, Pillow, numpy.

    python predict.py IMAGE_OR_FOLDER [...] [--top 3] [--json] [--csv out.csv]

The preprocessing in autodl_preprocess.py is the exact code the autodl server used.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from autodl_preprocess import Preprocess, load_image

HERE = Path(__file__).resolve().parent
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
BATCH = 16


def pictures(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
            )
        elif path.is_file():
            found.append(path)
        else:
            sys.exit(f"predict.py: {path} does not exist")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description="Classify pictures with an autodl model.")
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--top", type=int, default=3, help="classes to show per picture")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    args = parser.parse_args()

    labels = json.loads((HERE / "labels.json").read_text())
    preprocess = Preprocess.from_dict(json.loads((HERE / "preprocess.json").read_text()))
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    # An ensemble takes one input per backbone, each preprocessed its own way (inputs.json).
    inputs = [(session.get_inputs()[0].name, preprocess)]
    if (HERE / "inputs.json").exists():
        listed = json.loads((HERE / "inputs.json").read_text())
        inputs = [(d["name"], Preprocess.from_dict(d["preprocess"])) for d in listed]

    results: list[dict[str, Any]] = []
    files = pictures(args.paths)
    for start in range(0, len(files), BATCH):
        batches: list[list[np.ndarray]] = [[] for _ in inputs]
        names = []
        for path in files[start : start + BATCH]:
            try:
                arrays = [load_image(path, pp) for _, pp in inputs]
            except Exception as exc:  # an unreadable file is reported, the rest go on
                results.append({"file": str(path), "error": f"cannot read picture: {exc}"})
                continue
            for batch, array in zip(batches, arrays, strict=True):
                batch.append(array)
            names.append(path)
        if not names:
            continue
        feeds = {name: np.stack(batch) for (name, _), batch in zip(inputs, batches, strict=True)}
        probabilities = session.run(None, feeds)[0]
        for path, row in zip(names, probabilities, strict=True):
            results.append(
                {
                    "file": str(path),
                    "label": labels[int(np.argmax(row))],
                    "probabilities": {name: float(p) for name, p in zip(labels, row, strict=True)},
                }
            )

    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "label", *labels])
            for r in results:
                probs = r.get("probabilities", {})
                writer.writerow(
                    [r["file"], r.get("label", ""), *(probs.get(n, "") for n in labels)]
                )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: {r['error']}")
                continue
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: args.top]
            shown = ", ".join(f"{name} {p:.3f}" for name, p in top)
            print(f"{r['file']}: {r['label']}  ({shown})")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
