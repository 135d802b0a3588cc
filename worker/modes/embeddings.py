"""Embeddings of a run's images, per split: the first step of every mode.

Validation and test images are featurized in float32, as the exported model runs them, so a
run's scores are its downloaded model's. Training images take the CPU path measured fastest
for the backbone on this machine without losing accuracy (``precision.choose_path``); the
first run with enough images makes that measurement on its own pictures, after featurizing
them in float32 (which it needs anyway). Each precision has its own embedding-cache key, so
one run's training features are all of one precision.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.runs.schemas import FeaturizedCounts, RuntimeUsed, WeightsUsed
from worker.ml.errors import NotEnoughData
from worker.modes.base import Example, ModeContext, Reporter, weights_used

if TYPE_CHECKING:
    from backend.config import Settings
    from worker.ml.features import EmbeddingResult
    from worker.ml.precision import FeaturePath, RuntimeChoice

FEATURIZE_SPAN = (0.02, 0.85)


def embed_examples(
    examples: list[Example],
    backbone: str,
    context: ModeContext,
    reporter: Reporter,
    span: tuple[float, float] = FEATURIZE_SPAN,
    *,
    hflip: bool = False,
    scale: float = 1.0,
    detail: str | None = None,
) -> tuple[list[Example], np.ndarray, EmbeddingResult]:
    """Embeddings of ``examples`` (cached ones are reused); unreadable images are dropped.
    With ``hflip``, those of the mirrored images; with ``scale``, at that multiple of the
    backbone's input size (each cached apart). The stage is named by ``detail``, the
    backbone by default. The training images' path is chosen once per run and backbone
    (``context.runtimes``), so both views of one run share it; a view at another scale is
    featurized in float32 throughout (the faster paths were measured at the backbone's own
    size, and an int8 graph exists only at that size)."""
    from worker.ml.features import embed_images, feature_width
    from worker.ml.precision import FP32

    settings = context.settings
    total = len(examples)
    reporter.stage("featurizing", span[0], images_total=total, detail=detail or backbone)
    held = [e for e in examples if e.split != "train"]
    train = [e for e in examples if e.split == "train"]

    # Held-out images first in ``examples`` (as ``by_split`` orders them): both parts are
    # written straight into one array, else stacked from the two.
    X: np.ndarray | None = None
    if examples and all(e.split != "train" for e in examples[: len(held)]):
        width = feature_width(
            backbone,
            cache_dir=settings.cache_dir,
            weights_dir=settings.weights_dir,
            offline=settings.hf_offline,
            pretrained=context.pretrained,
        )
        X = np.empty((total, width), dtype=np.float32)

    def embed(part: list[Example], before: int, path: FeaturePath) -> EmbeddingResult:
        fast = path.runtime == "openvino" or path.precision != "f32"
        return embed_images(
            [(e.sha256, e.path) for e in part],
            backbone,
            cache_dir=settings.cache_dir,
            weights_dir=settings.weights_dir,
            offline=settings.hf_offline,
            pretrained=context.pretrained,
            progress=lambda done, _: reporter.items(before + done, total, *span),
            should_stop=reporter.should_stop,
            hflip=hflip,
            runtime=path.runtime if fast else "auto",  # type: ignore[arg-type]
            precision=path.precision,
            quantized_graph=path.quantized_graph,
            scale=scale,
            out=None if X is None else X[before : before + len(part)],
        )

    held_out = embed(held, 0, FP32)
    if scale != 1.0:
        fitted = embed(train, len(held), FP32)
        reporter.items(total, total, *span, force=True)
        return _readable(examples, _merged(examples, held_out, fitted, X))
    choice = context.runtimes.get(backbone)
    if choice is None:
        choice = _choice(backbone, held_out, settings)
        if choice is not None and choice.path != FP32:
            choice = _cheaper(choice, train, backbone, held_out, settings.cache_dir, hflip)
    fitted = embed(train, len(held), FP32 if choice is None else choice.path)
    reporter.items(total, total, *span, force=True)
    if choice is None:
        choice = _check(backbone, context, held, train, held_out, hflip)
    context.runtimes.setdefault(backbone, choice)
    return _readable(examples, _merged(examples, held_out, fitted, X))


def _readable(
    examples: list[Example], result: EmbeddingResult
) -> tuple[list[Example], np.ndarray, EmbeddingResult]:
    """The examples that could be read, their rows and the result."""
    if not result.failed:  # no copy of the (n, d) array: at 100,000 images it is 0.5 GB
        return list(examples), result.embeddings, result
    failed = set(result.failed)
    keep = [i for i, e in enumerate(examples) if e.sha256 not in failed]
    return [examples[i] for i in keep], result.embeddings[keep], result


def _merged(
    examples: list[Example],
    held_out: EmbeddingResult,
    fitted: EmbeddingResult,
    together: np.ndarray | None = None,
) -> EmbeddingResult:
    """One result in ``examples`` order from the held-out and the training images' ones;
    ``together``: the array both were written into (held-out rows first)."""
    if together is not None:
        embeddings = together
    elif examples:
        rows = {}
        for result, part in ((held_out, "held"), (fitted, "train")):
            chosen = [e for e in examples if (e.split == "train") == (part == "train")]
            rows.update({e.sha256: r for e, r in zip(chosen, result.embeddings, strict=True)})
        embeddings = np.stack([rows[e.sha256] for e in examples]).astype(np.float32, copy=False)
    else:
        embeddings = held_out.embeddings
    return dataclasses.replace(
        fitted,
        embeddings=embeddings,
        n_computed=held_out.n_computed + fitted.n_computed,
        n_cached=held_out.n_cached + fitted.n_cached,
        seconds=held_out.seconds + fitted.seconds,
        failed=[*held_out.failed, *fitted.failed],
        feature_graph=held_out.feature_graph or fitted.feature_graph,
    )


def _choice(backbone: str, held_out: EmbeddingResult, settings: Settings) -> RuntimeChoice | None:
    """The training images' path: fp32 on a GPU or where the settings say so, else the
    measured choice (None: not measured yet on this machine)."""
    from worker.ml.device import resolve_device
    from worker.ml.precision import FP32, FeaturePath, RuntimeChoice, choose_path

    if resolve_device("auto") != "cpu":
        return RuntimeChoice(FeaturePath("torch"), "a GPU featurizes (PyTorch)")
    if settings.cpu_runtime == "f32":
        return RuntimeChoice(FP32, "onnxruntime f32, as AUTODL_CPU_RUNTIME=f32 asks")
    return choose_path(backbone, held_out.weights, settings.cache_dir)


def _cheaper(
    choice: RuntimeChoice,
    train: list[Example],
    backbone: str,
    held_out: EmbeddingResult,
    cache_dir: Path,
    hflip: bool,
) -> RuntimeChoice:
    """The measured path, unless the fp32 cache makes fp32 quicker for these images: a
    cached embedding costs nothing, and one run's training features are of one precision."""
    from worker.ml.features import embedding_cache
    from worker.ml.precision import FP32, RuntimeChoice

    def missing(path: FeaturePath) -> int:
        cache = embedding_cache(
            cache_dir,
            backbone,
            held_out.weights,
            held_out.preprocess,
            hflip,
            path.precision,
            path.quantized_graph,
        )
        return sum(not cache.has(e.sha256) for e in train)

    fast, slow = missing(choice.path), missing(FP32)
    if fast / choice.speedup < slow:
        return choice
    return RuntimeChoice(
        FP32,
        f"onnxruntime f32: {len(train) - slow} of {len(train)} training images were cached in "
        f"fp32, quicker than computing {fast} with the measured {choice.path.name}",
        choice.measured_at,
        choice.measured,
        choice.images,
    )


def _check(
    backbone: str,
    context: ModeContext,
    held: list[Example],
    train: list[Example],
    held_out: EmbeddingResult,
    hflip: bool,
) -> RuntimeChoice:
    """This run featurizes in fp32; with enough images of both splits it measures the faster
    paths on them for the next runs, once it has succeeded (``context.checks``)."""
    from worker.ml.precision import CHECK_MIN_IMAGES, FP32, RuntimeChoice, check_paths

    val = [e for e in held if e.split == "val"]
    graph = held_out.feature_graph
    if hflip or graph is None or min(len(train), len(val)) < CHECK_MIN_IMAGES:
        return RuntimeChoice(
            FP32,
            f"onnxruntime f32: the faster CPU paths are measured once, on a run with "
            f"{CHECK_MIN_IMAGES}+ training and {CHECK_MIN_IMAGES}+ validation images",
        )
    context.checks[backbone] = functools.partial(
        check_paths,
        backbone,
        held_out.weights,
        held_out.preprocess,
        graph,
        [(e.path, e.label) for e in train],
        [(e.path, e.label) for e in val],
        context.settings.cache_dir,
        min_images=CHECK_MIN_IMAGES,
    )
    return RuntimeChoice(
        FP32,
        "onnxruntime f32 in this run, which measures the faster CPU paths on its images once "
        "it has succeeded (once per backbone and machine)",
        measured_now=True,
    )


def measured_reason(checked: RuntimeChoice) -> str:
    """A run's reason once its deferred check has measured the paths."""
    return (
        f"onnxruntime f32 in this run, which measured the paths for the next ones: {checked.reason}"
    )


def runtimes_used(context: ModeContext) -> dict[str, RuntimeUsed]:
    """How the CPU featurized each backbone of the run, as its metrics record it."""
    return {
        backbone: RuntimeUsed(
            train=choice.path.name,
            held_out="torch f32" if choice.path.runtime == "torch" else "onnxruntime f32",
            reason=choice.reason,
            measured_in_run=choice.measured_now,
            measured_at=choice.measured_at,
        )
        for backbone, choice in context.runtimes.items()
    }


def by_split(examples: list[Example]) -> list[Example]:
    """``examples`` grouped by split (val, test, any other, then train), each split in its
    own order: embedded in this order, every split's rows are one slice (a view, no copy),
    and the held-out and training parts are written into one array."""
    rank = {"val": 0, "test": 1, "train": 3}
    return sorted(examples, key=lambda e: rank.get(e.split, 2))


def split_arrays(
    examples: list[Example], X: np.ndarray, split: str
) -> tuple[list[Example], np.ndarray]:
    """The examples of ``split`` and their rows of ``X``: a view of ``X`` when they are
    contiguous (see :func:`by_split`), else a copy."""
    idx = [i for i, e in enumerate(examples) if e.split == split]
    if idx and idx[-1] - idx[0] + 1 == len(idx):
        return examples[idx[0] : idx[-1] + 1], X[idx[0] : idx[-1] + 1]
    return [examples[i] for i in idx], X[idx]


def require_trained_labels(train: list[Example], val: list[Example]) -> None:
    """Every label with validation images must have training images too."""
    missing = sorted(set(labels_of(val)) - set(labels_of(train)))
    if missing:
        raise NotEnoughData(
            "These labels have validation images but no training images: "
            + ", ".join(repr(m) for m in missing)
            + ". Move some of their images to the train split."
        )


def labels_of(examples: list[Example]) -> list[str]:
    return [e.label for e in examples]


@dataclass(frozen=True)
class EmbeddedSplits:
    """A run's images as embeddings, per split, ready for a head (or a head's warm start)."""

    train: list[Example]
    X_train: np.ndarray
    val: list[Example]
    X_val: np.ndarray
    test: list[Example]
    X_test: np.ndarray
    embedded: EmbeddingResult
    featurize_s: float

    @property
    def featurized(self) -> FeaturizedCounts:
        return FeaturizedCounts(
            computed=self.embedded.n_computed,
            cached=self.embedded.n_cached,
            skipped_unreadable=len(self.embedded.failed),
        )

    @property
    def weights(self) -> WeightsUsed:
        return weights_used(self.embedded.weights)


def embed_splits(
    examples: list[Example],
    context: ModeContext,
    reporter: Reporter,
    span: tuple[float, float] = FEATURIZE_SPAN,
) -> EmbeddedSplits:
    """Featurize (cache first) and split; every validated label must also be trained on.
    The splits' arrays are views of one (n, d) array of embeddings, the only one held."""
    started = time.perf_counter()
    kept, X, embedded = embed_examples(
        by_split(examples), context.backbone, context, reporter, span
    )
    if X is not embedded.embeddings:  # some were unreadable: keep only the readable rows
        embedded = dataclasses.replace(embedded, embeddings=X)
    featurize_s = time.perf_counter() - started
    train, X_train = split_arrays(kept, X, "train")
    val, X_val = split_arrays(kept, X, "val")
    test, X_test = split_arrays(kept, X, "test")
    require_trained_labels(train, val)
    reporter.check_cancel()
    return EmbeddedSplits(train, X_train, val, X_val, test, X_test, embedded, featurize_s)
