"""Faster CPU inference paths for a backbone's feature graph, measured against float32.

Candidates: ONNX Runtime float32 (the reference), OpenVINO float32, OpenVINO bfloat16 (only
where the CPU does bfloat16 natively, AMX or AVX512-BF16) and an int8 graph made by ONNX
Runtime's static quantiser (QDQ, per-channel weights, calibrated on real images). Each is
measured for speed (the graph alone, batch 32) and for what it does to the answers: cosine
similarity of its features to float32's and the accuracy of a linear probe (logistic
regression, train folder -> val folder) on real datasets, both with the candidate throughout
and as runs use it (the head trained on the candidate's features of the training images,
scored on float32 features of the validation images: what the exported fp32 model sees). A
candidate is acceptable only if it loses at most ``MAX_ACCURACY_LOSS`` points on every
dataset both ways and its features keep a mean cosine similarity of ``MIN_COSINE`` to
float32's; the fastest acceptable one wins. ``bench/precision.py`` runs this per backbone
and prints the table.

Runs (``worker/modes/embeddings.py``) use :func:`choose_path`: the choice measured once per
backbone, weights and CPU (:func:`cpu_caps`' signature) on the labelled images of the first
run big enough to judge it, persisted as a JSON file under the cache directory. A CPU with
neither native bfloat16 nor int8 dot products (VNNI, AMX) has nothing faster to offer:
float32 ONNX Runtime, and nothing is measured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from backend.inference.preprocess import Preprocess, load_image
from backend.storage import atomic_path, fetch_cached, share_cached
from worker.ml.features import Precision, Runner, _cpu_runner, cpu_has_bf16
from worker.ml.weights import WeightsInfo

log = logging.getLogger(__name__)

MAX_ACCURACY_LOSS = 0.3  # percentage points of linear-probe accuracy, per dataset
MIN_COSINE = 0.99  # mean cosine similarity of a candidate's features to float32's
BATCH = 32
# The check on a run's images: at least this many per split to judge (fewer: not measured,
# the run stays fp32), at most this many (spread over the split) to keep it short.
CHECK_MIN_IMAGES = 50
CHECK_MAX_IMAGES = 120
CALIBRATION_IMAGES = 64
# A check another worker started this long ago and never finished is abandoned.
CHECK_STALE_S = 15 * 60
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
    # Points lost by a head trained on this candidate's features, scored on float32 ones.
    mixed_loss: dict[str, float] = field(default_factory=dict)

    @property
    def acceptable(self) -> bool:
        losses = [*self.loss.values(), *self.mixed_loss.values()]
        return self.cosine_mean >= MIN_COSINE and all(p <= MAX_ACCURACY_LOSS for p in losses)

    def row(self) -> dict[str, object]:
        """The measurement as the persisted choice and the run's metrics record it."""
        return {
            "candidate": self.candidate.name,
            "img_s": round(self.img_s, 1),
            "cosine_mean": round(self.cosine_mean, 5),
            "cosine_min": round(self.cosine_min, 5),
            "accuracy": {k: round(v, 2) for k, v in self.accuracy.items()},
            "loss": {k: round(v, 2) for k, v in self.loss.items()},
            "mixed_loss": {k: round(v, 2) for k, v in self.mixed_loss.items()},
            "acceptable": self.acceptable,
        }


def quantize_int8(
    graph: Path,
    calibration: np.ndarray | Sequence[Mapping[str, np.ndarray]],
    out: Path,
    op_types: Sequence[str] | None = None,
) -> Path:
    """A static int8 (QDQ) copy of ``graph`` calibrated on ``calibration``: preprocessed
    images (N, 3, H, W) for the graph's ``input``, or the feeds of each calibration batch
    (a model of several inputs). ``op_types``: the operators to quantise (default: all
    that ONNX Runtime can)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if isinstance(calibration, np.ndarray):
        feeds = [{"input": b} for b in np.array_split(calibration, max(1, len(calibration) // 8))]
    else:
        feeds = [dict(f) for f in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {k: np.ascontiguousarray(v) for k, v in batch.items()}

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
        op_types_to_quantize=list(op_types) if op_types else None,
    )
    prepared.unlink(missing_ok=True)
    return out


def candidates(graph: Path, int8_graph: Path | None, bf16: bool | None = None) -> list[Candidate]:
    """The float32 reference first, then the other paths (bf16 only where ``bf16``, by
    default where this CPU does bfloat16 natively; int8 where a graph is given)."""
    found = [
        Candidate("onnxruntime f32", "onnxruntime", "f32", graph),
        Candidate("openvino f32", "openvino", "f32", graph),
    ]
    if cpu_has_bf16() if bf16 is None else bf16:
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
            if results:  # as a run uses it: trained on these features, scored on float32's
                mixed = probe_accuracy(train, data.y_train, ref_val, data.y_val)
                result.mixed_loss[data.name] = results[0].accuracy[data.name] - mixed
        all_cos = np.concatenate(cosines)
        result.cosine_mean, result.cosine_min = float(all_cos.mean()), float(all_cos.min())
        base = results[0].accuracy if results else result.accuracy
        result.loss = {k: base[k] - v for k, v in result.accuracy.items()}
        results.append(result)
    return results


def pick(results: list[Measured]) -> Measured:
    """The fastest acceptable candidate (the float32 reference always is)."""
    return max((r for r in results if r.acceptable), key=lambda r: r.img_s)


# ---------------------------------------------------------------- the choice runs use


@dataclass(frozen=True)
class CpuCaps:
    """What this CPU offers a faster path: native bfloat16 (as OpenVINO reports it) and int8
    dot products (VNNI or AMX-INT8, from the CPU's flags)."""

    model: str
    bf16: bool
    int8: bool
    flags: tuple[str, ...]
    threads: int

    @property
    def worth_measuring(self) -> bool:
        return self.bf16 or self.int8

    @property
    def signature(self) -> str:
        """The kind of machine a measurement holds for: CPU model, its relevant flags, the
        thread count and the runtimes' versions."""
        import onnxruntime

        try:
            import openvino

            openvino_version = openvino.__version__
        except ImportError:
            openvino_version = ""
        spec = {
            "model": self.model,
            "flags": self.flags,
            "bf16": self.bf16,
            "threads": self.threads,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino_version,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux); elsewhere no flags, so no int8 candidate."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), set()
    fields = [line.split(":", 1) for line in lines if ":" in line]
    model = next((v.strip() for k, v in fields if k.strip() == "model name"), platform.machine())
    flags = next((set(v.split()) for k, v in fields if k.strip() == "flags"), set())
    return model, flags


@functools.cache
def cpu_caps() -> CpuCaps:
    model, flags = _cpuinfo()
    relevant = tuple(sorted(f for f in (*INT8_FLAGS, *BF16_FLAGS) if f in flags))
    return CpuCaps(
        model, cpu_has_bf16(), any(f in flags for f in INT8_FLAGS), relevant, os.cpu_count() or 1
    )


@dataclass(frozen=True)
class FeaturePath:
    """How the CPU featurizes a run's training images: a runtime at a precision (int8: ONNX
    Runtime on a quantised copy of the backbone's feature graph)."""

    runtime: str = "onnxruntime"
    precision: Precision = "f32"
    quantized_graph: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.precision}"


FP32 = FeaturePath()


@dataclass(frozen=True)
class RuntimeChoice:
    """The path runs of one backbone use on this kind of machine, and why."""

    path: FeaturePath
    reason: str
    measured_at: str | None = None  # None: nothing was measured (no faster path to try)
    measured: list[dict[str, object]] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)  # per split, used by the check
    measured_now: bool = False  # this call made the measurement

    @property
    def speedup(self) -> float:
        """The chosen path's measured speed over the float32 reference's (1: not measured)."""
        speeds = {row["candidate"]: row["img_s"] for row in self.measured}
        reference, chosen = speeds.get(FP32.name), speeds.get(self.path.name)
        if not isinstance(reference, float | int) or not isinstance(chosen, float | int):
            return 1.0
        return float(chosen) / float(reference) if reference else 1.0


def choice_path(cache_dir: Path, backbone: str, weights: WeightsInfo, caps: CpuCaps) -> Path:
    name = f"{backbone.replace('/', '--')}-{weights.digest[:16]}-{caps.signature}.json"
    return Path(cache_dir) / "runtimes" / name


def choose_path(
    backbone: str, weights: WeightsInfo, cache_dir: Path, caps: CpuCaps | None = None
) -> RuntimeChoice | None:
    """The path measured for this backbone, weights and machine; float32 ONNX Runtime where
    this CPU has nothing faster to offer; None when a measurement is due (no record yet)."""
    caps = caps or cpu_caps()
    if not caps.worth_measuring:
        return RuntimeChoice(
            FP32, "onnxruntime f32: this CPU has neither native bfloat16 nor int8 dot products"
        )
    record = choice_path(cache_dir, backbone, weights, caps)
    if not fetch_cached(record, cache_dir):
        return None
    try:
        data = json.loads(record.read_text())
        graph = data["quantized_graph"]
        path = FeaturePath(
            data["runtime"],
            data["precision"],
            None if graph is None else Path(cache_dir) / "onnx" / graph,
        )
        choice = RuntimeChoice(
            path, data["reason"], data["measured_at"], data["measured"], data["images"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # damaged: measured again
    if path.quantized_graph is not None and not fetch_cached(path.quantized_graph, cache_dir):
        return None  # its int8 graph is gone: measured again
    return choice


def _save(record: Path, choice: RuntimeChoice, caps: CpuCaps, cache_dir: Path) -> None:
    graph = choice.path.quantized_graph
    data = {
        "runtime": choice.path.runtime,
        "precision": choice.path.precision,
        "quantized_graph": None if graph is None else graph.name,
        "reason": choice.reason,
        "measured_at": choice.measured_at,
        "measured": choice.measured,
        "images": choice.images,
        "cpu": asdict(caps),
    }
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    share_cached(record, cache_dir)


class _CheckLock:
    """One check per backbone and machine at a time, across worker processes: the lock file
    is created exclusively; a worker that finds it (fresh) does not measure."""

    def __init__(self, path: Path) -> None:
        self.path, self.held = path.with_suffix(".lock"), False

    def __enter__(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                self.held = True
                return True
            except FileExistsError:
                try:
                    if time.time() - self.path.stat().st_mtime < CHECK_STALE_S:
                        return False
                    self.path.unlink()  # abandoned by a worker that died measuring
                except FileNotFoundError:
                    pass
        return False

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)


def _spread(items: Sequence[tuple[Path, str]], n: int) -> list[tuple[Path, str]]:
    return list(items[:: max(1, len(items) // n)][:n])


def _decode(items: Sequence[tuple[Path, str]], pp: Preprocess) -> tuple[np.ndarray, list[str]]:
    arrays, labels = [], []
    for path, label in items:
        try:
            arrays.append(load_image(path, pp))
            labels.append(label)
        except Exception:  # unreadable: the run already left it out
            continue
    return np.stack(arrays), labels


def check_paths(
    backbone: str,
    weights: WeightsInfo,
    pp: Preprocess,
    graph: Path,
    train: Sequence[tuple[Path, str]],
    val: Sequence[tuple[Path, str]],
    cache_dir: Path,
    *,
    caps: CpuCaps | None = None,
    threads: int | None = None,
    min_images: int = CHECK_MIN_IMAGES,
) -> RuntimeChoice | None:
    """Measure this machine's paths for ``backbone`` on real labelled images ((path, label)
    of a run's train and val splits) and persist the choice. None: not judged (too few
    images, or another worker is measuring it now); runs stay fp32 meanwhile."""
    caps = caps or cpu_caps()
    if len(train) < min_images or len(val) < min_images or not caps.worth_measuring:
        return None
    record = choice_path(cache_dir, backbone, weights, caps)
    with _CheckLock(record) as mine:
        if not mine:
            return None
        started = time.perf_counter()
        X_train, y_train = _decode(_spread(train, CHECK_MAX_IMAGES), pp)
        X_val, y_val = _decode(_spread(val, CHECK_MAX_IMAGES), pp)
        data = Dataset("run", X_train, y_train, X_val, y_val)
        int8 = None
        if caps.int8:
            calibration = X_train[:: max(1, len(X_train) // CALIBRATION_IMAGES)][
                :CALIBRATION_IMAGES
            ]
            digest = hashlib.sha256(calibration.tobytes()).hexdigest()[:12]
            int8 = Path(cache_dir) / "onnx" / f"{graph.stem}-int8-{digest}.onnx"
            if not fetch_cached(int8, cache_dir):
                with atomic_path(int8) as tmp:
                    quantize_int8(graph, calibration, tmp)
                share_cached(int8, cache_dir)
        results = measure(candidates(graph, int8, caps.bf16), [data], threads or caps.threads)
        best = pick(results)
        choice = RuntimeChoice(
            FeaturePath(
                best.candidate.runtime,
                best.candidate.precision,  # type: ignore[arg-type]
                best.candidate.graph if best.candidate.precision == "int8" else None,
            ),
            _reason(best, results, len(y_val)),
            datetime.now(UTC).isoformat(timespec="seconds"),
            [r.row() for r in results],
            {"train": len(y_train), "val": len(y_val)},
            measured_now=True,
        )
        _save(record, choice, caps, cache_dir)
        log.info(
            "%s: %s (checked in %.1f s)", backbone, choice.reason, time.perf_counter() - started
        )
        return choice


def _reason(best: Measured, results: list[Measured], n_val: int) -> str:
    """The choice in words, with the numbers it was made on."""
    reference = results[0]

    def points(r: Measured) -> float:
        return 0.0 - max([*r.loss.values(), *r.mixed_loss.values()])  # never -0.0

    if best is reference:
        faster = [r for r in results[1:] if r.img_s > reference.img_s]
        if not faster:
            return "onnxruntime f32: no other path was faster on this machine"
        lost = "; ".join(
            f"{r.candidate.name} {r.img_s / reference.img_s:.1f}x as fast but "
            f"{points(r):+.1f} pt (cosine {r.cosine_mean:.4f})"
            for r in faster
        )
        return (
            f"onnxruntime f32: the faster paths lost accuracy on {n_val} validation images ({lost})"
        )
    return (
        f"{best.candidate.name}: {best.img_s / reference.img_s:.1f}x as fast as fp32, "
        f"{points(best):+.1f} pt on {n_val} validation images (cosine {best.cosine_mean:.4f})"
    )
