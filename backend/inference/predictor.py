"""Serve an exported ONNX classifier with onnxruntime (no torch in this process)."""

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
        self._input = self.session.get_inputs()[0].name

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for preprocessed images (N, 3, H, W)."""
        return np.asarray(self.session.run(None, {self._input: batch})[0])

    def predict(self, images: Sequence[ImageSource]) -> list[dict[str, Any]]:
        """``{label, probabilities: {name: p}}`` for each image file or file object."""
        if not images:
            return []
        batch = np.stack([load_image(image, self.preprocess) for image in images])
        results = []
        for row in self.predict_arrays(batch):
            probabilities = {name: float(p) for name, p in zip(self.labels, row, strict=True)}
            results.append(
                {"label": self.labels[int(np.argmax(row))], "probabilities": probabilities}
            )
        return results
