"""Whole-model transfer: train a pretrained timm backbone further on the user's images.

The classifier is a fresh linear layer, initialised from a linear probe on cached
embeddings when one is given (the first epochs then refine a good model instead of
repairing a random one). Only the layers asked for are trained (the head, the last
blocks, or all), with timm's transform, optimizer and scheduler factories: AdamW with
cosine decay after a short warm-up, label smoothing, and early stopping on validation
loss that keeps the best epoch's weights. On CUDA it uses autocast (bf16 where the GPU
has it, else fp16 with a GradScaler), channels_last and pinned, parallel decoding, and
halves the batch whenever the GPU runs out of memory. On a CPU it runs too, slowly.

Nothing here knows about runs or HTTP: inputs are paths and class indices.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from backend.inference.preprocess import Preprocess, load_image, open_rgb
from backend.runs.schemas import Augmentation, EpochRecord, TrainLayers
from worker.ml.backbones import create_backbone, get_backbone_spec
from worker.ml.device import device_name, resolve_device
from worker.ml.errors import Cancelled
from worker.ml.export import build_classifier
from worker.ml.heads import TrainedHead
from worker.ml.weights import WeightsInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

# AdamW learning rates for training the last blocks, by backbone family: the convnets
# pretrained on ImageNet-1k tolerate larger steps than the transformers and ConvNeXt.
# On hymenoptera (lite0, last blocks) 1e-4 kept the probe's accuracy where 5e-4 lost 1-3
# points (docs/benchmarks.md).
FAMILY_LR = {
    "efficientnet-lite": 1e-4,
    "efficientnet": 1e-4,
    "mobilenetv3": 1e-4,
    "resnet": 1e-4,
    "regnet": 1e-4,
    "convnext": 5e-5,
    "vit": 2e-5,
    "deit": 2e-5,
}
DEFAULT_LR = 1e-4
# Relative to the last-blocks rate: a lone head moves further, a whole network less far.
LR_SCALE = {"head": 4.0, "last_blocks": 1.0, "all": 0.5}
WEIGHT_DECAY = 0.05
PATIENCE = 3  # epochs without a lower validation loss before stopping
MIN_DELTA = 1e-4
CPU_BATCH = 16
GPU_MAX_BATCH = 128
IMBALANCE_FOR_WEIGHTS = 1.5  # largest / smallest class count above which the loss is weighted
SCHEDULE_UNITS = 1000  # scheduler updates per epoch: the rate moves smoothly at any batch size
MIN_BATCH = 1


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune; ``None`` values are chosen from the backbone and the hardware.

    The first fields are a run's options (their defaults live in RunOptions, see
    worker.modes.finetune.finetune_config); the rest are this step's own settings.
    """

    train_layers: TrainLayers
    last_blocks: int
    epochs: int
    time_budget_s: float | None
    batch_size: int | None
    learning_rate: float | None
    layer_decay: float | None
    label_smoothing: float
    augmentation: Augmentation
    seed: int
    pretrained: bool
    weight_decay: float = WEIGHT_DECAY
    patience: int = PATIENCE
    # BatchNorm statistics stay those of pretraining unless asked: batches of a few dozen
    # images give noisy ones (on hymenoptera training them cost 1-3 points of accuracy).
    train_batchnorm: bool = False
    device: str = "auto"
    # Fault injection for tests: any training batch larger than this raises
    # torch.OutOfMemoryError, as a GPU would, so the halving path runs on a CPU.
    oom_above: int | None = None


@dataclass
class FinetuneResult:
    """The trained classifier (CPU, float32, eval mode: image batch -> probabilities)."""

    model: nn.Module
    preprocess: Preprocess
    weights: WeightsInfo
    history: list[EpochRecord]
    val_proba: np.ndarray
    best_epoch: int  # 0: no epoch beat the starting point (the linear probe's head)
    start_val_loss: float
    start_val_accuracy: float
    epochs_run: int
    batch_size: int
    batch_size_requested: int
    out_of_memory_halvings: int
    learning_rate: float
    device: str
    amp: str
    class_balancing: str
    trainable_params: int
    total_params: int
    stopped: str
    seconds: float
    train_images_per_s: float


# ---------------------------------------------------------------- data


class ImageDataset(Dataset):
    """(image, class index) pairs decoded on access; batches decode in parallel threads.

    ``__getitems__`` lets a DataLoader without worker processes (a Celery pool process
    may not fork) still decode a whole batch at once: PIL releases the GIL.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, int]],
        load: Callable[[Path], torch.Tensor],
        threads: int = 1,
    ) -> None:
        self.items = list(items)
        self.load = load
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return self.load(path), label

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        if self.threads == 1:
            return [self[i] for i in indices]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        return list(self._pool.map(self.__getitem__, indices))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}  # worker processes make their own pool


def train_transform(pp: Preprocess, augmentation: Augmentation) -> Callable[[Path], torch.Tensor]:
    """timm's training transform for the level asked; ``none`` is the eval preprocessing."""
    if augmentation == "none":
        return lambda path: torch.from_numpy(load_image(path, pp))
    from timm.data import create_transform

    strong = augmentation == "strong"
    transform = create_transform(
        pp.input_size,
        is_training=True,
        scale=(0.08, 1.0) if strong else (0.5, 1.0),
        hflip=0.5,
        color_jitter=0.4 if strong else 0.2,
        auto_augment="rand-m9-mstd0.5-inc1" if strong else None,
        re_prob=0.25 if strong else 0.0,
        interpolation=pp.interpolation,
        mean=pp.mean,
        std=pp.std,
    )
    # Decode at reduced JPEG scale: the random crop never needs more than ~2x the input.
    draft = pp.resize_size * 2
    return lambda path: transform(open_rgb(path, draft_size=draft))


def _eval_transform(pp: Preprocess) -> Callable[[Path], torch.Tensor]:
    # Exactly what prediction and the exported model see, so scores carry over.
    return lambda path: torch.from_numpy(load_image(path, pp))


def _can_fork() -> bool:
    # Celery's prefork pool runs tasks in daemonic processes, which may not have children.
    return not multiprocessing.current_process().daemon


def make_loader(
    dataset: ImageDataset, batch_size: int, *, shuffle: bool, device: str, seed: int
) -> DataLoader:
    """Pinned, parallel loading on CUDA (worker processes where allowed); threads on CPU."""
    cores = os.cpu_count() or 1
    workers = min(8, cores) if device != "cpu" and _can_fork() else 0
    dataset.threads = 1 if workers else cores
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=False,
        num_workers=workers,
        pin_memory=device != "cpu",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        generator=generator,
    )


# ---------------------------------------------------------------- model


def default_learning_rate(backbone: str, train_layers: TrainLayers) -> float:
    """AdamW base rate from the backbone's family, scaled for how much of it trains."""
    spec = get_backbone_spec(backbone)
    base = FAMILY_LR.get(spec.family, DEFAULT_LR) if spec else DEFAULT_LR
    return base * LR_SCALE[train_layers]


def _classifier_of(model: nn.Module) -> nn.Module:
    """timm's classifier layer (typed: nn.Module attributes read as Tensor | Module)."""
    return cast(nn.Module, cast(Any, model).get_classifier())


def select_trainable(model: nn.Module, train_layers: TrainLayers, last_blocks: int) -> int:
    """Freeze what is not trained; returns the number of trainable parameters.

    Blocks are timm's coarse parameter groups (stem, each stage, the final conv/norm), so
    ``last_blocks=2`` means the classifier plus the last two groups before it.
    """
    classifier = {id(p) for p in _classifier_of(model).parameters()}
    if train_layers == "all":
        names = {n for n, _ in model.named_parameters()}
    else:
        names = {n for n, p in model.named_parameters() if id(p) in classifier}
        if train_layers == "last_blocks":
            from timm.models import group_parameters

            groups = group_parameters(model, cast(Any, model).group_matcher(coarse=True))
            params = dict(model.named_parameters())
            body = [
                group
                for _, group in sorted(groups.items())
                if not all(id(params[n]) in classifier for n in group)
            ]
            for group in body[-last_blocks:]:
                names.update(group)
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _set_train_mode(model: nn.Module, train_batchnorm: bool) -> None:
    """Train mode; BatchNorm layers keep their pretrained statistics unless trained ones."""
    model.train()
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        frozen = not any(p.requires_grad for p in module.parameters())
        if frozen or not train_batchnorm:
            module.eval()


def init_classifier(model: nn.Module, head: TrainedHead, num_classes: int) -> None:
    """Copy a single-layer linear probe (logits = W x + b on pooled features) into the model."""
    layer = head.layers[0]
    classifier = _classifier_of(model)
    if len(head.layers) != 1 or not isinstance(classifier, nn.Linear):
        raise ValueError("only a single linear layer can initialise the classifier")
    if layer.weight.shape != (num_classes, classifier.in_features):
        raise ValueError(f"probe shape {layer.weight.shape} does not fit the classifier")
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(layer.weight.astype(np.float32)))
        classifier.bias.copy_(torch.from_numpy(layer.bias.astype(np.float32)))


# ---------------------------------------------------------------- hardware


def amp_mode(device: str) -> tuple[str, torch.dtype | None]:
    """('bf16' | 'fp16' | 'off', autocast dtype) for ``device``."""
    if not device.startswith("cuda"):
        return "off", None
    if torch.cuda.is_bf16_supported():
        return "bf16", torch.bfloat16
    return "fp16", torch.float16


def _autocast(device: str, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.split(":")[0], dtype=dtype)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def fit_batch(
    step: Callable[[int], T], start: int, device: str, on_halve: Callable[[int], None]
) -> tuple[int, T]:
    """Run ``step(size)`` from ``start`` down, halving the batch whenever it runs out of
    memory; the size that fit and what ``step`` returned."""
    size = start
    while True:
        try:
            return size, step(size)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc) or size <= MIN_BATCH:
                raise
            _free_memory(device)
            size = max(MIN_BATCH, size // 2)
            on_halve(size)


def largest_fitting_batch(
    step: Callable[[int], None], start: int, device: str, on_halve: Callable[[int], None]
) -> int:
    """The largest batch size from ``start`` down (halving) for which ``step`` succeeds."""
    return fit_batch(step, start, device, on_halve)[0]


def _pow2_floor(n: int) -> int:
    return 1 << max(0, int(math.log2(max(1, n))))


# ---------------------------------------------------------------- training


class _Trainer:
    """Holds the model, optimizer and schedule of one fine-tune; epochs go through run()."""

    def __init__(
        self,
        model: nn.Module,
        config: FinetuneConfig,
        device: str,
        lr: float,
        class_weights: torch.Tensor | None,
    ) -> None:
        from timm.optim import create_optimizer_v2

        self.model = model
        self.config = config
        self.device = device
        self.lr = lr
        self.amp, self.amp_dtype = amp_mode(device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self.optimizer = create_optimizer_v2(
            model,
            opt="adamw",
            lr=lr,
            weight_decay=config.weight_decay,
            layer_decay=config.layer_decay,
        )
        weight = class_weights.to(device) if class_weights is not None else None
        self.train_loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
        self.val_loss = nn.CrossEntropyLoss(weight=weight, reduction="sum")
        self.plan_schedule(config.epochs)

    def plan_schedule(self, epochs: int) -> None:
        """Cosine decay over ``epochs`` after a warm-up of a tenth of them (at most one)."""
        from timm.scheduler import create_scheduler_v2

        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=epochs,
            warmup_epochs=min(1.0, 0.1 * epochs),  # type: ignore[arg-type]
            warmup_lr=self.lr * 0.1,
            min_lr=self.lr * 0.01,
            step_on_epochs=False,
            updates_per_epoch=SCHEDULE_UNITS,
        )

    def set_position(self, epoch_progress: float) -> None:
        self.scheduler.step_update(int(epoch_progress * SCHEDULE_UNITS))

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimizer step on a batch; returns its mean loss."""
        oom_above = self.config.oom_above
        if oom_above is not None and len(images) > oom_above:
            raise torch.OutOfMemoryError(f"simulated: batch of {len(images)} > {oom_above}")
        images = images.to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device, non_blocking=True)
        with _autocast(self.device, self.amp_dtype):
            loss = self.train_loss(self.model(images), targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def probe(self, batch_size: int, input_size: int) -> None:
        """A forward and backward pass at ``batch_size`` on noise, to see whether it fits."""
        if self.device == "cpu":
            return  # host memory is not the constraint on a CPU worker
        if self.config.oom_above is not None and batch_size > self.config.oom_above:
            raise torch.OutOfMemoryError(f"simulated: batch of {batch_size}")
        self.model.eval()  # keep the BatchNorm statistics out of it
        x = torch.randn(batch_size, 3, input_size, input_size, device=self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            with _autocast(self.device, self.amp_dtype):
                loss = self.model(x).float().logsumexp(1).mean()
            loss.backward()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            del x

    @torch.no_grad()
    def evaluate(
        self, loader: DataLoader, *, exact: bool = False
    ) -> tuple[float, float, np.ndarray]:
        """(mean loss, accuracy, probabilities) on ``loader``; ``exact`` = float32, no TF32."""
        self.model.eval()
        total_loss, correct, n = 0.0, 0, 0
        probabilities = []
        dtype = None if exact else self.amp_dtype
        tf32 = (
            torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
            if exact and self.device.startswith("cuda")
            else nullcontext()
        )
        matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
        try:
            if exact:
                torch.backends.cuda.matmul.allow_tf32 = False
            with tf32:
                for images, targets in loader:
                    images = images.to(self.device, non_blocking=True)
                    images = images.contiguous(memory_format=torch.channels_last)
                    targets = targets.to(self.device, non_blocking=True)
                    with _autocast(self.device, dtype):
                        logits = self.model(images).float()
                    total_loss += float(self.val_loss(logits, targets))
                    correct += int((logits.argmax(1) == targets).sum())
                    n += len(targets)
                    probabilities.append(torch.softmax(logits, 1).cpu().numpy())
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        return total_loss / max(n, 1), correct / max(n, 1), np.concatenate(probabilities)


def finetune(
    train: Sequence[tuple[Path, int]],
    val: Sequence[tuple[Path, int]],
    backbone: str,
    num_classes: int,
    config: FinetuneConfig,
    *,
    weights_dir: Path | None = None,
    init_head: TrainedHead | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
    on_epoch: Callable[[list[EpochRecord]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Fine-tune ``backbone`` on ``train`` ((path, class index) pairs), validating on ``val``.

    ``progress(done, total, epoch, epochs)`` counts batches of all planned epochs (and says
    which epoch, from 1, of how many runs now); ``on_epoch(history)``
    is called as each epoch ends; ``should_stop()`` is polled between batches (Cancelled).
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    network, pp, weights, trainable = _build_network(
        backbone, num_classes, config, device, weights_dir, init_head
    )
    lr = config.learning_rate or default_learning_rate(backbone, config.train_layers)
    balancing, class_weights = _class_weights(train, num_classes)
    trainer = _Trainer(network, config, device, lr, class_weights)
    halvings = _Halvings()
    requested = config.batch_size or _default_batch(device, len(train))
    batch = largest_fitting_batch(
        lambda size: trainer.probe(size, pp.input_size), requested, device, halvings
    )
    loop = _EpochLoop(
        trainer,
        ImageDataset(train, train_transform(pp, config.augmentation)),
        make_loader(
            ImageDataset(val, _eval_transform(pp)), batch, shuffle=False, device=device, seed=0
        ),
        batch,
        halvings,
        started,
    )
    loop.run(progress, on_epoch, should_stop)
    return loop.result(pp, weights, requested, balancing, trainable)


def _build_network(
    backbone: str,
    num_classes: int,
    config: FinetuneConfig,
    device: str,
    weights_dir: Path | None,
    init_head: TrainedHead | None,
) -> tuple[nn.Module, Preprocess, WeightsInfo, int]:
    """The pretrained network with its classifier (from the probe when given), the layers
    to train unfrozen, on ``device``; returns it with the number of trainable parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network, pp, weights = create_backbone(
            backbone, pretrained=config.pretrained, weights_dir=weights_dir, num_classes=num_classes
        )
    if init_head is not None:
        init_classifier(network, init_head, num_classes)
    trainable = select_trainable(network, config.train_layers, config.last_blocks)
    network = network.to(device).to(memory_format=torch.channels_last)
    return network, pp, weights, trainable


def _class_weights(
    train: Sequence[tuple[Path, int]], num_classes: int
) -> tuple[str, torch.Tensor | None]:
    """Loss weights inverse to the class counts when the classes are imbalanced."""
    counts = np.bincount([y for _, y in train], minlength=num_classes)
    if counts.min() > 0 and counts.max() / counts.min() > IMBALANCE_FOR_WEIGHTS:
        weights = torch.tensor(len(train) / (num_classes * counts), dtype=torch.float32)
        return "loss_weights", weights
    return "none", None


def _default_batch(device: str, n_train: int) -> int:
    return min(GPU_MAX_BATCH, _pow2_floor(n_train)) if device != "cpu" else CPU_BATCH


class _Halvings:
    """Counts (and logs) each time the training batch was halved for lack of memory."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, size: int) -> None:
        self.count += 1
        log.warning("out of memory: training batch halved to %d", size)


class _EpochLoop:
    """Epochs until the plan, the patience or the time budget ends them, keeping the best.

    Epoch 0 is the starting point (the linear probe's head): training must beat it.
    """

    def __init__(
        self,
        trainer: _Trainer,
        train_set: ImageDataset,
        val_loader: DataLoader,
        batch: int,
        halvings: _Halvings,
        started: float,
    ) -> None:
        self.trainer, self.train_set, self.val_loader = trainer, train_set, val_loader
        self.config = trainer.config
        self.batch, self.halvings, self.started = batch, halvings, started
        self.history: list[EpochRecord] = []
        self.start_loss, self.start_accuracy, self.best_proba = trainer.evaluate(val_loader)
        self.best_loss, self.best_epoch = self.start_loss, 0
        self.best_state = _state_copy(trainer.model)
        self.planned = self.config.epochs
        self.stopped = "epochs"
        self.batches_done = self.stale = 0
        self.train_seconds, self.train_images = 0.0, 0

    def run(
        self,
        progress: Callable[[int, int, int, int], None] | None,
        on_epoch: Callable[[list[EpochRecord]], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        while len(self.history) < self.planned:
            epoch_started = time.perf_counter()
            loss_sum, seen = self._train_one(progress, should_stop)
            self.train_seconds += time.perf_counter() - epoch_started
            self.train_images += seen
            val_loss, val_acc, proba = self.trainer.evaluate(self.val_loader)
            self.history.append(
                EpochRecord(
                    epoch=len(self.history) + 1,
                    train_loss=round(loss_sum / max(seen, 1), 5),
                    val_loss=round(val_loss, 5),
                    val_accuracy=round(val_acc, 5),
                    lr=float(f"{self.trainer.optimizer.param_groups[-1]['lr']:.3g}"),
                    seconds=round(time.perf_counter() - epoch_started, 2),
                )
            )
            if on_epoch:
                on_epoch(list(self.history))
            if not self._keep_best(val_loss, proba) and self.stale >= self.config.patience:
                self.stopped = "early_stopping"
                return
            if not self._fits_budget(time.perf_counter() - epoch_started):
                self.stopped = "time_budget"
                return

    def _train_one(
        self,
        progress: Callable[[int, int, int, int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> tuple[float, int]:
        """One epoch; it restarts with half the batch after running out of memory."""
        epoch = len(self.history)
        n_batches = 0

        def attempt(size: int) -> tuple[float, int]:
            nonlocal n_batches
            loader = make_loader(
                self.train_set,
                size,
                shuffle=True,
                device=self.trainer.device,
                seed=self.config.seed + epoch,
            )
            n_batches = len(loader)
            return _train_epoch(
                self.trainer, loader, epoch, self.planned, self.batches_done, progress, should_stop
            )

        self.batch, (loss_sum, seen) = fit_batch(
            attempt, self.batch, self.trainer.device, self.halvings
        )
        self.batches_done += n_batches
        return loss_sum, seen

    def _keep_best(self, val_loss: float, proba: np.ndarray) -> bool:
        """Remember this epoch if its validation loss is the lowest yet."""
        if val_loss < self.best_loss - MIN_DELTA:
            self.best_loss, self.best_epoch, self.stale = val_loss, len(self.history), 0
            self.best_state = _state_copy(self.trainer.model)
            self.best_proba = proba
            return True
        self.stale += 1
        return False

    def _fits_budget(self, epoch_s: float) -> bool:
        """Whether another epoch fits the time budget; shortens the plan to what fits."""
        budget = self.config.time_budget_s
        epoch = len(self.history)
        if budget is None or epoch >= self.planned:
            return True
        fits = int((budget - (time.perf_counter() - self.started)) // epoch_s)
        if fits <= 0:
            return False
        if epoch + fits < self.planned:
            self.planned = epoch + fits
            self.trainer.plan_schedule(self.planned)
        return True

    def result(
        self,
        pp: Preprocess,
        weights: WeightsInfo,
        requested: int,
        balancing: str,
        trainable: int,
    ) -> FinetuneResult:
        """The best epoch's classifier (or the probe start) and how training went."""
        classifier, best_proba = self.best_classifier()
        trainer = self.trainer
        return FinetuneResult(
            model=classifier,
            preprocess=pp,
            weights=weights,
            history=self.history,
            val_proba=best_proba,
            best_epoch=self.best_epoch,
            start_val_loss=round(self.start_loss, 5),
            start_val_accuracy=round(self.start_accuracy, 5),
            epochs_run=len(self.history),
            batch_size=self.batch,
            batch_size_requested=requested,
            out_of_memory_halvings=self.halvings.count,
            learning_rate=trainer.lr,
            device=device_name(trainer.device),
            amp=trainer.amp,
            class_balancing=balancing,
            trainable_params=trainable,
            total_params=sum(p.numel() for p in trainer.model.parameters()),
            stopped=self.stopped,
            seconds=time.perf_counter() - self.started,
            train_images_per_s=self.train_images / self.train_seconds
            if self.train_seconds
            else 0.0,
        )

    def best_classifier(self) -> tuple[nn.Module, np.ndarray]:
        """The best epoch's network as a CPU float32 classifier, and its validation scores."""
        network = self.trainer.model
        network.load_state_dict(self.best_state)
        proba = self.best_proba
        if self.trainer.device != "cpu":
            # Autocast scores are not what the exported float32 model will say: score again.
            _, _, proba = self.trainer.evaluate(self.val_loader, exact=True)
        classifier = build_classifier(
            network.to("cpu").to(memory_format=torch.contiguous_format).float(), nn.Identity()
        )
        for param in classifier.parameters():
            param.requires_grad_(False)
        return classifier.eval(), proba


def _train_epoch(
    trainer: _Trainer,
    loader: DataLoader,
    epoch: int,
    planned: int,
    batches_before: int,
    progress: Callable[[int, int, int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[float, int]:
    """One pass over ``loader``; returns (summed loss, images seen)."""
    _set_train_mode(trainer.model, trainer.config.train_batchnorm)
    n_batches = len(loader)
    loss_sum, seen = 0.0, 0
    for index, (images, targets) in enumerate(loader):
        if should_stop and should_stop():
            raise Cancelled()
        trainer.set_position(epoch + index / n_batches)
        loss_sum += trainer.step(images, targets) * len(targets)
        seen += len(targets)
        if progress:
            progress(batches_before + index + 1, planned * n_batches, epoch + 1, planned)
    return loss_sum, seen


def _state_copy(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
