"""The torch-free preprocessing used by featurization, prediction and exported bundles."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.inference.preprocess import Preprocess, load_image
from tests.worker.conftest import Image as DatasetImage

LITE0 = Preprocess.from_crop_pct(224, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _jpeg(img: Image.Image, **save: object) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **save)
    buf.seek(0)
    return buf


def _gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def test_round_trips_through_a_dict() -> None:
    assert LITE0.resize_size == 256
    assert Preprocess.from_dict(LITE0.to_dict()) == LITE0


def test_matches_timms_eval_transform(images: list[DatasetImage]) -> None:
    from timm.data import create_transform

    transform = create_transform(
        input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    )  # fmt: skip
    for im in images[::40]:
        ours = load_image(im.path, LITE0)
        with Image.open(im.path) as raw:
            theirs = transform(raw.convert("RGB")).numpy()
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        assert np.abs(ours - theirs).mean() < 1e-2  # in [-1, 1] units


def test_applies_exif_orientation() -> None:
    upright = _gradient(300, 400)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90° clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    got = load_image(_jpeg(stored, exif=exif), LITE0)
    want = load_image(_jpeg(upright), LITE0)
    assert np.abs(got - want).mean() < 0.02


def test_reads_grayscale_and_the_first_frame_of_a_gif(tmp_path: Path) -> None:
    frames = [Image.new("L", (64, 48), v) for v in (200, 10)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    out = load_image(tmp_path / "a.gif", LITE0)
    assert out.shape == (3, 224, 224)
    assert np.allclose(out, 200 / 127.5 - 1, atol=1e-2)


def test_draft_decoding_keeps_large_jpegs_close_to_a_full_decode() -> None:
    big = _gradient(2000, 1500)
    fast = load_image(_jpeg(big), LITE0)
    full = load_image(io.BytesIO(_png(big)), LITE0)  # PNG: never drafted
    assert np.abs(fast - full).mean() < 0.02


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_rejects_files_that_are_not_images(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError):
        load_image(bad, LITE0)


def test_inference_package_never_imports_torch() -> None:
    code = (
        "import sys, backend.inference.preprocess, backend.inference.predictor;"
        "sys.exit('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
