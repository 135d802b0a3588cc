"""Serve an exported ONNX classifier with onnxruntime (no torch in this process).

A single-backbone model has one input, ``input``, preprocessed as its ``preprocess``
metadata says. An ensemble (Auto) has one input per backbone, listed with each one's
preprocessing in its ``inputs`` metadata; each picture is decoded once per input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from backend.inference.preprocess import ImageSource, Preprocess, load_image

SPIN_CONFIG = "session.intra_op.allow_spinning"


class OnnxClassifier:
    """An exported classifier; labels and preprocessing are read from the ONNX metadata."""

    def __init__(self, path: str | Path, *, threads: int | None = None, spin: bool = False) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # onnxruntime's intra-op threads spin after each run by default, burning the cores
        # that the API's other requests (and other models' runs) are waiting for: 10
        # concurrent predictions took 35-40 % longer with spinning (bench/predict_threads.py).
        options.add_session_config_entry(SPIN_CONFIG, "1" if spin else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.labels: list[str] = json.loads(meta["labels"])
            self.preprocess = Preprocess.from_dict(json.loads(meta["preprocess"]))
        except KeyError as exc:
            raise ValueError(f"{path} is not an autodl classifier: no {exc} metadata") from exc
        self.metadata: dict[str, str] = dict(meta)
        names = [i.name for i in self.session.get_inputs()]
        if "inputs" in meta:
            listed = json.loads(meta["inputs"])
            self.inputs = [(d["name"], Preprocess.from_dict(d["preprocess"])) for d in listed]
        else:
            self.inputs = [(names[0], self.preprocess)]
        if sorted(n for n, _ in self.inputs) != sorted(names):
            raise ValueError(f"{path}: its inputs {names} do not match its metadata")

    @property
    def input_name(self) -> str:
        """The first (for a single-backbone model, the only) input's name."""
        return self.inputs[0][0]

    def predict_arrays(self, batch: np.ndarray, *more: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for preprocessed images (N, 3, H, W), one batch per input."""
        feeds = dict(zip((n for n, _ in self.inputs), (batch, *more), strict=True))
        return np.asarray(self.session.run(None, feeds)[0])

    def preprocess_all(self, images: Sequence[ImageSource]) -> list[np.ndarray]:
        """One batch per input: every picture decoded as that input's preprocessing says."""
        batches = []
        for _, pp in self.inputs:
            rows = []
            for image in images:
                if hasattr(image, "seek"):
                    image.seek(0)  # a file object is read once per input
                rows.append(load_image(image, pp))
            batches.append(np.stack(rows))
        return batches

    def predict(self, images: Sequence[ImageSource]) -> list[dict[str, Any]]:
        """``{label, probabilities: {name: p}}`` for each image file or file object."""
        if not images:
            return []
        results = []
        for row in self.predict_arrays(*self.preprocess_all(images)):
            probabilities = {name: float(p) for name, p in zip(self.labels, row, strict=True)}
            results.append(
                {"label": self.labels[int(np.argmax(row))], "probabilities": probabilities}
            )
        return results
