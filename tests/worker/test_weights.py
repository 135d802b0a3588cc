"""Backbone zoo and the three sources of pretrained weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.runs.zoo import weights_availability, zoo_with_weights
from tests.worker.conftest import Image
from worker.ml.backbones import create_backbone, list_backbones
from worker.ml.errors import InvalidWeights, UnknownBackbone, WeightsUnavailable
from worker.ml.features import EmbeddingResult
from worker.ml.weights import import_weights, resolve_weights

ANT, BEE = 310, 309  # ImageNet-1k class indices


def test_zoo_lists_bundled_and_classic_backbones() -> None:
    names = {spec.name for spec in list_backbones()}
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite2", "resnet50", "convnext_tiny"} <= names
    lite0 = next(s for s in list_backbones() if s.name == "tf_efficientnet_lite0")
    assert (lite0.input_size, lite0.params_m, lite0.imagenet_top1) == (224, 4.65, 74.83)


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(UnknownBackbone, match="resnet50"):
        create_backbone("resnet5O")


def test_bundled_weights_need_no_network() -> None:
    for n in (0, 1, 2):
        assert weights_availability(f"tf_efficientnet_lite{n}", None, offline=True) == "bundled"


def test_offline_without_weights_explains_the_three_ways(tmp_path: Path) -> None:
    assert weights_availability("resnet18", tmp_path, offline=True) == "unavailable"
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone("resnet18", weights_dir=tmp_path, offline=True)
    message = str(err.value)
    assert "tf_efficientnet_lite0" in message
    assert "autodl weights import FILE --model resnet18" in message
    assert "online" in message and "Hugging Face cache" in message


def fake_hub_cache(root: Path, repo_id: str, filename: str = "model.safetensors") -> Path:
    """A Hugging Face cache entry laid out as huggingface_hub writes it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    file = repo / "snapshots" / "0123abcd" / filename
    file.parent.mkdir(parents=True)
    file.write_bytes(b"weights of " + repo_id.encode())
    return file


def test_a_cached_resnet18d_is_not_taken_for_resnet18(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's list, auto's candidates and training all use one lookup: an exact repo."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path / "hub", "timm/resnet18d.ra2_in1k")
    listed = {b["name"]: b["weights"] for b in zoo_with_weights(tmp_path, offline=True)}
    assert listed["resnet18"] == "unavailable"
    with pytest.raises(WeightsUnavailable):
        resolve_weights("resnet18", tmp_path, offline=True)
    assert resolve_weights("resnet18d", tmp_path, offline=True).source == "cached"

    exact = fake_hub_cache(tmp_path / "hub", "timm/resnet18.a1_in1k")
    listed = {b["name"]: b["weights"] for b in zoo_with_weights(tmp_path, offline=True)}
    assert listed["resnet18"] == "cached"
    info = resolve_weights("resnet18", tmp_path, offline=True)
    assert (info.source, info.path) == ("cached", str(exact))


def test_scratch_backbones_are_flagged_and_reproducible() -> None:
    a, _, info = create_backbone("resnet18", pretrained=False)
    b, _, _ = create_backbone("resnet18", pretrained=False)
    assert info.source == "scratch"
    assert torch.equal(a.conv1.weight, b.conv1.weight)


def test_imported_pth_becomes_cached_safetensors(tmp_path: Path) -> None:
    source, _, _ = create_backbone("resnet18", pretrained=False, num_classes=1000)
    with torch.no_grad():
        source.conv1.weight.fill_(0.5)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "r18.pth")
    info = import_weights(tmp_path / "r18.pth", "resnet18", tmp_path / "weights")
    assert info.source == "cached" and len(info.digest) == 64
    assert (tmp_path / "weights" / "resnet18.safetensors").is_file()
    assert weights_availability("resnet18", tmp_path / "weights", offline=True) == "cached"
    model, _, loaded = create_backbone("resnet18", weights_dir=tmp_path / "weights", offline=True)
    assert loaded.digest == info.digest
    assert torch.all(model.conv1.weight == 0.5)


def test_import_rejects_weights_of_another_model(tmp_path: Path) -> None:
    lite0, _, _ = create_backbone("tf_efficientnet_lite0", num_classes=1000)
    torch.save(lite0.state_dict(), tmp_path / "lite0.pth")
    with pytest.raises(InvalidWeights, match=r"do not fit 'resnet18'.*missing: conv1\.weight"):
        import_weights(tmp_path / "lite0.pth", "resnet18", tmp_path / "weights")
    assert not (tmp_path / "weights" / "resnet18.safetensors").exists()


class _Payload:
    """What a malicious checkpoint holds: unpickling it runs code (here: creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_import_never_unpickles_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # A real torch checkpoint (torch.save's zip format), which torch.load can read.
    torch.save({"conv1.weight": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(InvalidWeights, match="no pickled code"):
        import_weights(tmp_path / "evil.pth", "resnet18", tmp_path / "weights")
    assert not marker.exists(), "loading the checkpoint ran its code"


@pytest.mark.slow
def test_bundled_lite0_recognises_ants_and_bees(
    images: list[Image], lite0: EmbeddingResult
) -> None:
    """The bundled weights are real ImageNet weights: its own head knows ants and bees."""
    model, pp, info = create_backbone("tf_efficientnet_lite0", num_classes=1000)
    assert info.source == "bundled"
    classifier = model.get_classifier()
    with torch.no_grad():
        logits = classifier(torch.from_numpy(lite0.embeddings[lite0.valid])).numpy()
    hits = np.isin(logits.argmax(1), [ANT, BEE]).mean()
    assert hits >= 0.8, f"only {hits:.0%} predicted as ant or bee"
    # The cached features are those of the full eager network.
    from backend.inference.preprocess import load_image

    batch = torch.from_numpy(np.stack([load_image(im.path, pp) for im in images[:4]]))
    with torch.no_grad():
        eager = model(batch).numpy()
    assert np.abs(eager - logits[:4]).max() < 1e-3
