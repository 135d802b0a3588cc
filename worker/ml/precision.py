"""Faster CPU inference paths for a backbone's feature graph, measured against float32.

Candidates: ONNX Runtime float32 (the reference), OpenVINO float32, OpenVINO bfloat16 (only
where the CPU does bfloat16 natively, AMX or AVX512-BF16) and an int8 graph made by ONNX
Runtime's static quantiser (QDQ, per-channel weights, calibrated on real images). Each is
measured for speed (the graph alone, batch 32) and for what it does to the answers: cosine
similarity of its features to float32's and the accuracy of a linear probe (logistic
regression, train folder -> val folder) on real datasets. A candidate is acceptable only if
it loses at most ``MAX_ACCURACY_LOSS`` points on every dataset; the fastest acceptable one
wins. ``bench/precision.py`` runs this per backbone and prints the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worker.ml.features import Runner, _cpu_runner, cpu_has_bf16

MAX_ACCURACY_LOSS = 0.3  # percentage points of linear-probe accuracy, per dataset
BATCH = 32


@dataclass(frozen=True)
class Candidate:
    name: str
    runtime: str  # onnxruntime | openvino
    precision: str  # f32 | bf16 | int8
    graph: Path


@dataclass
class Measured:
    candidate: Candidate
    img_s: float
    cosine_mean: float = 1.0
    cosine_min: float = 1.0
    accuracy: dict[str, float] = field(default_factory=dict)  # dataset -> percent
    loss: dict[str, float] = field(default_factory=dict)  # dataset -> points vs float32

    @property
    def acceptable(self) -> bool:
        return all(points <= MAX_ACCURACY_LOSS for points in self.loss.values())


def quantize_int8(graph: Path, calibration: np.ndarray, out: Path) -> Path:
    """A static int8 (QDQ) copy of ``graph`` calibrated on ``calibration`` (N, 3, H, W)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.split(calibration, max(1, len(calibration) // 8)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": np.ascontiguousarray(batch)}

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink(missing_ok=True)
    return out


def candidates(graph: Path, int8_graph: Path | None) -> list[Candidate]:
    found = [
        Candidate("onnxruntime f32", "onnxruntime", "f32", graph),
        Candidate("openvino f32", "openvino", "f32", graph),
    ]
    if cpu_has_bf16():
        found.append(Candidate("openvino bf16", "openvino", "bf16", graph))
    if int8_graph is not None:
        found.append(Candidate("onnxruntime int8", "onnxruntime", "int8", int8_graph))
    return found


def runner(candidate: Candidate, threads: int) -> Runner:
    precision = "bf16" if candidate.precision == "bf16" else "f32"
    return _cpu_runner(str(candidate.graph), candidate.runtime, threads, precision)  # type: ignore[arg-type]


def features(run: Runner, images: np.ndarray) -> np.ndarray:
    return np.concatenate([run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def speed(run: Runner, sample: np.ndarray, rounds: int = 4) -> float:
    """Images/s of the graph alone on one batch (after one warm-up call)."""
    run(sample)
    start = time.perf_counter()
    for _ in range(rounds):
        run(sample)
    return len(sample) * rounds / (time.perf_counter() - start)


def probe_accuracy(
    X_train: np.ndarray, y_train: Sequence[str], X_val: np.ndarray, y_val: Sequence[str]
) -> float:
    """Validation accuracy (percent) of the logistic-regression head on these features."""
    from worker.ml.heads import train_head

    head = train_head(X_train, list(y_train), "logreg")
    return 100.0 * float(np.mean(head.predict(X_val) == np.asarray(y_val, dtype=object)))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: np.ndarray  # preprocessed images
    y_train: list[str]
    val: np.ndarray
    y_val: list[str]


def measure(
    found: list[Candidate],
    datasets: list[Dataset],
    threads: int,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Measured]:
    """Speed, feature agreement and linear-probe accuracy of each candidate; the first
    candidate is the float32 reference."""
    sample = datasets[0].train[:BATCH]
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    results: list[Measured] = []
    for candidate in found:
        progress(candidate.name)
        run = runner(candidate, threads)
        result = Measured(candidate, speed(run, sample))
        cosines = []
        for data in datasets:
            train, val = features(run, data.train), features(run, data.val)
            if data.name not in reference:
                reference[data.name] = (train, val)
            ref_train, ref_val = reference[data.name]
            cosines.append(
                cosine(np.concatenate([train, val]), np.concatenate([ref_train, ref_val]))
            )
            result.accuracy[data.name] = probe_accuracy(train, data.y_train, val, data.y_val)
        all_cos = np.concatenate(cosines)
        result.cosine_mean, result.cosine_min = float(all_cos.mean()), float(all_cos.min())
        base = results[0].accuracy if results else result.accuracy
        result.loss = {k: base[k] - v for k, v in result.accuracy.items()}
        results.append(result)
    return results


def pick(results: list[Measured]) -> Measured:
    """The fastest acceptable candidate (the float32 reference always is)."""
    return max((r for r in results if r.acceptable), key=lambda r: r.img_s)
