"""A self-contained model bundle: ONNX model, labels, preprocessing, predict.py, a README
that says how to run it, and the model card.

The bundle is built in a temporary file, unpacked and run once (``predict.py`` in a
subprocess on a validation picture) before it is renamed into place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import backend.inference.preprocess as preprocess_module
from backend.inference.preprocess import Preprocess
from backend.storage import atomic_path

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
REQUIREMENTS = "onnxruntime>=1.17\nPillow>=10.0\nnumpy>=1.24\n"
PARITY_ATOL = 1e-4


class BundleCheckFailed(RuntimeError):
    pass


def bundle_files(
    onnx_path: Path,
    labels: Sequence[str],
    preprocess: Preprocess,
    model_card: str,
    readme: str,
    inputs: str | None = None,
) -> dict[str, bytes]:
    """The bundle's files; ``inputs`` (an ensemble's ``inputs`` metadata, JSON) becomes
    inputs.json, from which predict.py preprocesses each input of the graph its own way."""
    extra = {"inputs.json": inputs.encode()} if inputs else {}
    return {
        "README.md": readme.encode(),
        **extra,
        "model.onnx": onnx_path.read_bytes(),
        "labels.json": json.dumps(list(labels), indent=2).encode(),
        "preprocess.json": json.dumps(preprocess.to_dict(), indent=2).encode(),
        "predict.py": (TEMPLATES / "predict.py").read_bytes(),
        "autodl_preprocess.py": Path(preprocess_module.__file__).read_bytes(),
        "requirements.txt": REQUIREMENTS.encode(),
        "MODEL_CARD.md": model_card.encode(),
    }


def run_predict_script(folder: Path, images: Sequence[Path]) -> list[dict]:
    """Run the unpacked bundle's predict.py on ``images`` and return its JSON answer."""
    completed = subprocess.run(
        [sys.executable, "predict.py", *map(str, images), "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise BundleCheckFailed(f"predict.py failed: {completed.stderr[-2000:]}")
    return list(json.loads(completed.stdout))


def build_bundle(
    onnx_path: Path,
    out_path: Path,
    *,
    labels: Sequence[str],
    preprocess: Preprocess,
    model_card: str,
    readme: str,
    check_image: Path,
    expected: Sequence[float],
    root: str = "autodl-model",
) -> Path:
    """Zip the bundle under ``root/``, verify predict.py reproduces ``expected``, rename."""
    import onnx

    meta = {
        p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props
    }
    files = bundle_files(onnx_path, labels, preprocess, model_card, readme, meta.get("inputs"))
    with atomic_path(out_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(f"{root}/{name}", data)
        with tempfile.TemporaryDirectory() as folder:
            with zipfile.ZipFile(tmp) as archive:
                archive.extractall(folder)
            answer = run_predict_script(Path(folder) / root, [check_image])[0]
        got = np.array([answer["probabilities"][name] for name in labels])
        if np.abs(got - np.asarray(expected)).max() > PARITY_ATOL:
            raise BundleCheckFailed("the bundle's predict.py disagrees with the trained model")
    return out_path
