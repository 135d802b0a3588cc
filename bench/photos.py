"""Real photos for the benchmarks: the hymenoptera set as it is, and 12-megapixel
phone-size JPEGs made from it (upscaled, re-encoded) in a temporary folder.

The big files are never committed: ``phone_jpegs`` writes them under a folder the caller
owns (a ``tempfile.TemporaryDirectory``) and, as a phone does, encodes them at quality 90
with 4:2:0 chroma subsampling and EXIF-free baseline JPEG.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"
PHONE_SIZE = (4000, 3000)  # 12 MP, 4:3


def hymenoptera_files() -> list[Path]:
    """The dataset's 398 files (one is a GIF placeholder), sorted."""
    if not HYMENOPTERA.is_dir():
        raise SystemExit(f"the shared dataset is not at {HYMENOPTERA}")
    return sorted(p for p in HYMENOPTERA.glob("*/*/*") if p.is_file())


def phone_jpegs(folder: Path, n: int) -> list[Path]:
    """``n`` 12-MP JPEGs: hymenoptera photos upscaled (bicubic) to 4000x3000 or 3000x4000
    by their orientation, re-encoded at quality 90. Written as ``<split>/<label>/name``."""
    out = []
    sources = [p for p in hymenoptera_files() if p.suffix.lower() in (".jpg", ".jpeg")]
    for path in sources[:: max(1, len(sources) // n)][:n]:
        target = folder / path.relative_to(HYMENOPTERA)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        size = PHONE_SIZE if rgb.width >= rgb.height else PHONE_SIZE[::-1]
        rgb.resize(size, Image.Resampling.BICUBIC).save(target, "JPEG", quality=90)
        out.append(target)
    return out


def sha_items(files: list[Path]) -> list[tuple[str, Path]]:
    """(SHA-256, path) pairs, as featurization takes them."""
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in files]
