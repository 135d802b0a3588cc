"""Batched featurization with a persistent embedding cache.

Embeddings are cached per (image SHA-256, backbone, weights digest, preprocessing, view —
the image itself or its horizontal mirror, for flip test-time augmentation): one
folder per cache key holding one ``.npy`` per image, each written to a temporary name
and renamed, so concurrent workers never see a partial file. On CPU the backbone runs
as an exported ONNX graph (OpenVINO or ONNX Runtime); on CUDA in PyTorch with autocast
and channels_last. Decoding runs in a thread pool (PIL releases the GIL) one batch
ahead of inference, and at most two batches are decoded at any time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from backend.inference.preprocess import Preprocess, load_image
from backend.storage import atomic_path, fetch_cached, file_sha256, share_cached
from worker.ml.backbones import check_backbone_name, create_backbone
from worker.ml.device import resolve_device
from worker.ml.errors import Cancelled
from worker.ml.export import write_onnx
from worker.ml.weights import SCRATCH_WEIGHTS, WeightsInfo, resolve_weights

log = logging.getLogger(__name__)

Runtime = Literal["auto", "openvino", "onnxruntime", "torch"]
Runner = Callable[[np.ndarray], np.ndarray]
# OpenVINO's inference precision, or "int8": ONNX Runtime on a statically quantised copy of
# the feature graph (worker/ml/precision.py). Set explicitly: on CPUs with AMX or AVX512-BF16
# OpenVINO otherwise runs in bfloat16 (embeddings then differ from ONNX Runtime's by ~0.3).
Precision = Literal["f32", "bf16", "f16", "int8"]
# Preference order on CPU. On the 2-core benchmark machine ONNX Runtime measured as fast
# as or faster than OpenVINO on the same graph (docs/benchmarks.md).
CPU_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")


@dataclass
class EmbeddingResult:
    """Embeddings in input order; rows of unreadable images are NaN and listed in ``failed``."""

    embeddings: np.ndarray
    n_computed: int
    n_cached: int
    weights: WeightsInfo
    preprocess: Preprocess
    seconds: float
    failed: list[str] = field(default_factory=list)
    runtime: str = ""
    precision: str = "f32"  # "bf16" (OpenVINO), "int8" (a quantised graph) or "f32"
    # The cached pooled-feature ONNX graph, when one exists (CPU featurization makes it).
    feature_graph: Path | None = None

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the rows that hold an embedding."""
        return ~np.isnan(self.embeddings).any(axis=1)


def cache_key(
    backbone: str,
    weights: WeightsInfo,
    preprocess: Preprocess,
    hflip: bool = False,
    precision: str = "f32",
) -> str:
    """Name of the cache folder for embeddings of one backbone, weights, preprocessing,
    view (``hflip``: the preprocessed image mirrored left-right) and inference precision
    (features computed in bfloat16 differ from float32 ones, so they are cached apart; an
    int8 graph's precision names the graph: ``int8-<its digest>``)."""
    spec: dict[str, object] = {
        "backbone": backbone,
        "weights": weights.digest,
        "preprocess": preprocess.to_dict(),
    }
    if hflip:  # absent for the plain view, so its existing cache keys stay valid
        spec["view"] = "hflip"
    if precision != "f32":  # likewise absent for float32
        spec["precision"] = precision
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def embedding_cache(
    cache_dir: Path,
    backbone: str,
    weights: WeightsInfo,
    preprocess: Preprocess,
    hflip: bool = False,
    precision: Precision = "f32",
    quantized_graph: Path | None = None,
) -> EmbeddingCache:
    """The cache of one backbone, view and precision (an int8 graph's key names its digest)."""
    key_precision: str = precision
    if precision == "int8":
        assert quantized_graph is not None
        key_precision = f"int8-{file_sha256(quantized_graph)[:16]}"
    return EmbeddingCache(cache_dir, cache_key(backbone, weights, preprocess, hflip, key_precision))


class EmbeddingCache:
    """One folder per cache key, one ``<sha256>.npy`` per image (two-level fan-out)."""

    def __init__(self, root: Path, key: str) -> None:
        self.root = Path(root)
        self.dir = self.root / "embeddings" / key

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.npy"

    def get(self, sha: str) -> np.ndarray | None:
        try:
            if not fetch_cached(self._path(sha), self.root):  # another worker's, on S3
                return None
            return np.load(self._path(sha))
        except (FileNotFoundError, ValueError, OSError):
            return None  # absent, or damaged: recompute and overwrite

    def has(self, sha: str) -> bool:
        """Whether this worker holds ``sha``'s vector (no fetch from object storage)."""
        return self._path(sha).exists()

    def put(self, sha: str, vector: np.ndarray) -> None:
        with atomic_path(self._path(sha)) as tmp, tmp.open("wb") as f:
            np.save(f, np.asarray(vector, dtype=np.float32))
        share_cached(self._path(sha), self.root)

    def fill(
        self, items: dict[str, str | Path], out: np.ndarray, rows: dict[str, list[int]]
    ) -> tuple[set[str], list[tuple[str, str | Path]]]:
        """Write the cached vectors of ``items`` into their ``rows`` of ``out``; returns (the
        images found, the items still to featurize). Nothing per image is kept besides the
        output array: 100,000 vectors held apart as well doubled a run's memory."""
        found: set[str] = set()
        missing: list[tuple[str, str | Path]] = []
        for sha, path in items.items():
            vector = self.get(sha)
            if vector is None or vector.shape != out.shape[1:]:
                missing.append((sha, path))
            else:
                out[rows[sha]] = vector
                found.add(sha)
        return found, missing


@dataclass(frozen=True)
class BackboneFacts:
    """What featurizing needs to know of a backbone without building it: its eval
    preprocessing and feature width. Remembered per (backbone, weights digest) once the
    network has been built, so a run whose embeddings are all cached builds nothing."""

    preprocess: Preprocess
    num_features: int


def _facts_path(cache_dir: Path, backbone: str, weights: WeightsInfo) -> Path:
    name = f"{backbone.replace('/', '--')}-{weights.digest[:24]}.json"
    return Path(cache_dir) / "backbones" / name


def _read_facts(path: Path) -> BackboneFacts | None:
    try:
        data = json.loads(path.read_text())
        return BackboneFacts(Preprocess.from_dict(data["preprocess"]), int(data["num_features"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: the network is built and the file rewritten


def _write_facts(path: Path, facts: BackboneFacts) -> None:
    data = {"preprocess": facts.preprocess.to_dict(), "num_features": facts.num_features}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True))


class _Backbone:
    """A backbone's facts at once, its network only when an image must go through it."""

    def __init__(
        self,
        name: str,
        cache_dir: Path,
        weights_dir: Path | None,
        offline: bool | None,
        pretrained: bool = True,
    ) -> None:
        self.name, self.weights_dir, self.offline = name, weights_dir, offline
        self.pretrained = pretrained
        check_backbone_name(name)
        self.weights = (
            resolve_weights(name, weights_dir, offline=offline) if pretrained else SCRATCH_WEIGHTS
        )
        self._model: torch.nn.Module | None = None
        path = _facts_path(cache_dir, name, self.weights)
        facts = _read_facts(path) if fetch_cached(path, cache_dir) else None
        if facts is None:
            model, pp, _ = self._build()
            facts = BackboneFacts(pp, int(cast(int, model.num_features)))
            _write_facts(path, facts)
            share_cached(path, cache_dir)
        self.facts = facts

    def _build(self) -> tuple[torch.nn.Module, Preprocess, WeightsInfo]:
        model, pp, self.weights = create_backbone(
            self.name,
            pretrained=self.pretrained,
            weights_dir=self.weights_dir,
            offline=self.offline,
        )
        self._model = model
        return model, pp, self.weights

    @property
    def model(self) -> torch.nn.Module:
        return self._model if self._model is not None else self._build()[0]


def scaled(pp: Preprocess, scale: float) -> Preprocess:
    """``pp`` at ``scale`` times its input size (rounded to a multiple of 32 px, the
    backbones' total stride) with the same crop fraction: the backbone sees the same part
    of each picture at more pixels. Pooled features have the same width at any size."""
    size = max(32, round(pp.input_size * scale / 32) * 32) if scale != 1.0 else pp.input_size
    if size == pp.input_size:
        return pp
    crop_pct = pp.input_size / pp.resize_size
    return dataclasses.replace(pp, input_size=size, resize_size=math.floor(size / crop_pct + 1e-6))


def _onnx_path(cache_dir: Path, backbone: str, weights: WeightsInfo, pp: Preprocess) -> Path:
    key = cache_key(backbone, weights, pp)
    return Path(cache_dir) / "onnx" / f"{backbone.replace('/', '--')}-{key}.onnx"


def feature_onnx(
    model: torch.nn.Module, backbone: str, weights: WeightsInfo, pp: Preprocess, cache_dir: Path
) -> Path:
    """The pooled-feature ONNX graph of a backbone, exported once per weights digest."""
    path = _onnx_path(cache_dir, backbone, weights, pp)
    if not fetch_cached(path, cache_dir):
        log.info("exporting %s to %s", backbone, path)
        sample = torch.randn(2, 3, pp.input_size, pp.input_size)
        write_onnx(model, sample, path, output_name="features")
        share_cached(path, cache_dir)
    return path


@functools.lru_cache(maxsize=2)
def _cpu_runner(path: str, runtime: str, threads: int, precision: Precision = "f32") -> Runner:
    """A compiled CPU session, kept per process: compiling takes a second or more.
    ``precision`` applies to OpenVINO (ONNX Runtime's CPU provider runs the graph's float32)."""
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            path,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
                "CACHE_DIR": str(Path(path).parent / "openvino-cache"),
            },
        )
        request = compiled.create_infer_request()
        output = compiled.output(0)
        return lambda x: np.array(request.infer({0: x})[output], dtype=np.float32)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning workers would steal the cores the decode threads need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return _OrtRunner(session)


class _OrtRunner:
    """An ONNX Runtime session as a Runner, whose memory arena can be handed back."""

    def __init__(self, session: object) -> None:
        self.session: Any = session

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {"input": x})[0], dtype=np.float32)

    def release(self, sample: np.ndarray) -> None:
        """Free the arena's unused blocks (~250 MB after batches of 32 at 224 px: the
        worker keeps the session for the next run, but a run that goes on to train a head
        on 100,000 embeddings needs that memory; docs/benchmarks.md). The next batch
        grows it again."""
        import onnxruntime as ort

        shrink = ort.RunOptions()
        shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.session.run(None, {"input": sample[:1]}, shrink)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (AMX or AVX512-BF16), as OpenVINO
    reports it; without it OpenVINO would run a bf16 request in float32."""
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no OpenVINO, or no CPU plugin
        return False


def default_cpu_runtime() -> str:
    """The first installed runtime of CPU_RUNTIMES (PyTorch if neither is)."""
    import importlib.util

    for name in CPU_RUNTIMES:
        if importlib.util.find_spec(name) is not None:
            return name
    return "torch"


def _torch_runner(model: torch.nn.Module, device: str) -> Runner:
    model = model.to(device).to(memory_format=torch.channels_last)
    use_amp = device.startswith("cuda")

    def run(x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(x).to(device, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.split(":")[0], enabled=use_amp):
            return model(batch).float().cpu().numpy()

    return run


def _load_or_none(path: str | Path, pp: Preprocess) -> np.ndarray | None:
    try:
        return load_image(path, pp)
    except Exception as exc:  # any undecodable file is reported, not fatal
        log.warning("cannot read image %s: %s", path, exc)
        return None


def feature_width(
    backbone: str,
    *,
    cache_dir: Path,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    pretrained: bool = True,
) -> int:
    """Columns of ``backbone``'s embeddings (remembered per weights digest once known)."""
    return _Backbone(backbone, cache_dir, weights_dir, offline, pretrained).facts.num_features


def embed_images(
    items: Sequence[tuple[str, str | Path]],
    backbone: str,
    *,
    cache_dir: Path,
    weights_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
    runtime: Runtime = "auto",
    offline: bool | None = None,
    hflip: bool = False,
    pretrained: bool = True,
    precision: Precision = "f32",
    quantized_graph: Path | None = None,
    scale: float = 1.0,
    out: np.ndarray | None = None,
) -> EmbeddingResult:
    """Pooled backbone features of ``items`` ((sha256, path) pairs), cached on disk.

    With ``hflip`` the features are those of each preprocessed image mirrored left-right
    (the last axis reversed, as an exported flip-averaging graph does), cached apart.
    Only images missing from the cache are decoded and run through the backbone; when
    none is missing, the network is not even built.
    ``progress(done, total)`` is called after each batch, ``should_stop()`` before each
    (raising Cancelled); unreadable images are skipped and listed in ``failed``.
    Without ``pretrained`` the backbone has create_backbone's seeded random weights.
    ``precision`` ``bf16`` or ``f16`` runs OpenVINO at that precision (``runtime`` must be
    ``auto`` or ``openvino``); ``int8`` runs ONNX Runtime on ``quantized_graph`` (a copy of
    the backbone's feature graph made by ``precision.quantize_int8``). Embeddings of each
    precision (and of each int8 graph) are cached under their own key.
    ``scale`` runs the backbone at that multiple of its own input size (:func:`scaled`),
    with its own cache key and feature graph (not with ``quantized_graph``, made at the
    backbone's own size).
    ``out``, when given (float32, one row per item, :func:`feature_width` columns), is
    filled and returned as the embeddings: a caller assembling one array of several calls
    then holds no second copy.
    """
    if precision == "int8":
        if quantized_graph is None or runtime not in ("auto", "onnxruntime"):
            raise ValueError("precision 'int8' needs ONNX Runtime and a quantized_graph")
        if scale != 1.0:
            raise ValueError("an int8 graph runs at the backbone's own input size only")
        runtime = "onnxruntime"
    elif precision != "f32":
        if runtime not in ("auto", "openvino"):
            raise ValueError(f"precision {precision!r} needs OpenVINO, not {runtime!r}")
        runtime = "openvino"
    start = time.perf_counter()
    threads = threads or os.cpu_count() or 1
    net = _Backbone(backbone, cache_dir, weights_dir, offline, pretrained)
    pp, weights = net.facts.preprocess, net.weights
    pp = scaled(pp, scale)
    cache = embedding_cache(cache_dir, backbone, weights, pp, hflip, precision, quantized_graph)
    unique: dict[str, str | Path] = dict(items)
    rows: dict[str, list[int]] = {}
    for row, (sha, _) in enumerate(items):
        rows.setdefault(sha, []).append(row)
    # The only per-image memory: rows are filled as they are read or computed.
    shape = (len(items), net.facts.num_features)
    if out is None:
        embeddings = np.full(shape, np.nan, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 array of shape {shape}, not {out.shape}")
    else:
        embeddings = out
        embeddings.fill(np.nan)
    found, todo = cache.fill(unique, embeddings, rows)
    n_cached = len(found)
    if progress:
        progress(n_cached, len(unique))

    failed: list[str] = []
    used = ""
    if todo:
        used, runner = _make_runner(
            net,
            backbone,
            weights,
            pp,
            cache_dir,
            device,
            runtime,
            threads,
            precision,
            quantized_graph,
        )
        run = _mirrored(runner) if hflip else runner
        count = _Counted(progress, done=n_cached, total=len(unique))
        try:
            failed = _featurize(
                todo, run, pp, cache, embeddings, rows, batch_size, threads, count, should_stop
            )
        finally:
            if isinstance(runner, _OrtRunner):
                size = pp.input_size
                runner.release(np.zeros((1, 3, size, size), dtype=np.float32))

    graph = _onnx_path(cache_dir, backbone, weights, pp)
    return EmbeddingResult(
        embeddings=embeddings,
        n_computed=len(todo) - len(failed),
        n_cached=n_cached,
        weights=weights,
        preprocess=pp,
        seconds=time.perf_counter() - start,
        failed=failed,
        runtime=used,
        precision=precision,
        feature_graph=graph if fetch_cached(graph, cache_dir) else None,
    )


@dataclass
class _Counted:
    """Progress over the images of one call: cached ones count as done from the start."""

    report: Callable[[int, int], None] | None
    done: int
    total: int

    def add(self, n: int) -> None:
        self.done += n
        if self.report:
            self.report(self.done, self.total)


def _featurize(
    todo: list[tuple[str, str | Path]],
    run: Runner,
    pp: Preprocess,
    cache: EmbeddingCache,
    out: np.ndarray,
    rows: dict[str, list[int]],
    batch_size: int,
    threads: int,
    count: _Counted,
    should_stop: Callable[[], bool] | None,
) -> list[str]:
    """Decode and run ``todo`` batch by batch, decoding the next batch while this one runs;
    new vectors go to their ``rows`` of ``out`` and to the cache. Returns the images that
    could not be read."""
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    failed: list[str] = []
    # Decode with every core: inference and decoding overlap and share them.
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def submit(batch: list[tuple[str, str | Path]]) -> list[Future[np.ndarray | None]]:
            return [pool.submit(_load_or_none, path, pp) for _, path in batch]

        pending = submit(batches[0])
        for index, batch in enumerate(batches):
            if should_stop and should_stop():
                for fut in pending:
                    fut.cancel()
                raise Cancelled()
            arrays = [fut.result() for fut in pending]
            if index + 1 < len(batches):
                pending = submit(batches[index + 1])
            ok = [(sha, a) for (sha, _), a in zip(batch, arrays, strict=True) if a is not None]
            failed += [sha for (sha, _), a in zip(batch, arrays, strict=True) if a is None]
            if ok:
                for (sha, _), vector in zip(ok, run(np.stack([a for _, a in ok])), strict=True):
                    cache.put(sha, vector)
                    out[rows[sha]] = vector
            count.add(len(batch))
    return failed


def _mirrored(run: Runner) -> Runner:
    """The runner on each preprocessed image mirrored left-right (the width axis reversed)."""
    return lambda x: run(np.ascontiguousarray(x[..., ::-1]))


def _make_runner(
    net: _Backbone,
    backbone: str,
    weights: WeightsInfo,
    pp: Preprocess,
    cache_dir: Path,
    device: str,
    runtime: Runtime,
    threads: int,
    precision: Precision = "f32",
    quantized_graph: Path | None = None,
) -> tuple[str, Runner]:
    """Pick and build the inference runtime: PyTorch on CUDA, an ONNX runtime on CPU (the
    network is built only to export its graph the first time, never once it is cached)."""
    device = resolve_device(device)
    if runtime == "auto":
        runtime = "torch" if device != "cpu" else default_cpu_runtime()  # type: ignore[assignment]
    if runtime == "torch":
        torch.set_num_threads(threads)
        return "torch", _torch_runner(net.model, device)
    if precision == "int8" and quantized_graph is not None:
        return "onnxruntime", _cpu_runner(str(quantized_graph), "onnxruntime", threads)
    path = _onnx_path(cache_dir, backbone, weights, pp)
    if not fetch_cached(path, cache_dir):
        path = feature_onnx(net.model, backbone, weights, pp, cache_dir)
    return str(runtime), _cpu_runner(str(path), str(runtime), threads, precision)


@dataclass(frozen=True)
class Pace:
    """What featurizing costs on this machine with one backbone, measured on a few pictures:
    the per-picture rate a run's featurization will go at, and the pictures' embeddings."""

    images_per_s: float  # decoding and running a picture, once the first batch warmed up
    setup_s: float | None  # loading the cached graph (None: it was exported just now)
    embeddings: np.ndarray  # of the readable pictures, in order
    readable: list[int]  # their indexes in the pictures measured
    preprocess: Preprocess
    feature_graph: Path | None


def measure_pace(
    paths: Sequence[str | Path],
    backbone: str,
    *,
    cache_dir: Path,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    batch_size: int = 4,
    threads: int | None = None,
) -> Pace:
    """Time ``paths`` through ``backbone`` as :func:`embed_images` runs them (decoding on
    every core, then the runtime it picks), never reading or filling the embedding cache:
    the first batch warms up, the others are timed. The feature graph is exported (and
    cached) if it was not yet, as a first run would."""
    if len(paths) <= batch_size:
        raise ValueError("measuring a pace needs more than one batch of pictures")
    threads = threads or os.cpu_count() or 1
    net = _Backbone(backbone, cache_dir, weights_dir, offline)
    pp, weights = net.facts.preprocess, net.weights
    graph = _onnx_path(cache_dir, backbone, weights, pp)
    had_graph = fetch_cached(graph, cache_dir)
    started = time.perf_counter()
    _, run = _make_runner(net, backbone, weights, pp, cache_dir, "auto", "auto", threads)
    setup_s = time.perf_counter() - started if had_graph else None
    rows: list[np.ndarray] = []
    readable: list[int] = []
    timed, timed_s = 0, 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            began = time.perf_counter()
            decoded = list(pool.map(lambda p: _load_or_none(p, pp), batch))
            arrays = [a for a in decoded if a is not None]
            readable += [start + i for i, a in enumerate(decoded) if a is not None]
            if arrays:
                rows.append(run(np.stack(arrays)))
            if start:  # the first batch pays the runtime's warm-up
                timed += len(arrays)
                timed_s += time.perf_counter() - began
    if not timed:
        raise ValueError("none of the pictures could be read")
    return Pace(
        images_per_s=timed / timed_s,
        setup_s=setup_s,
        embeddings=np.concatenate(rows),
        readable=readable,
        preprocess=pp,
        feature_graph=graph if fetch_cached(graph, cache_dir) else None,
    )
