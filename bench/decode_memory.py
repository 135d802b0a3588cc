"""Peak memory of checking one large upload: autodl's read_picture against the plain Pillow
way (load, exif_transpose, copy, convert, thumbnail), each in a fresh process.

Makes an 8000 x 8000 (64-megapixel, the per-picture limit) JPEG and PNG in a temporary
folder and prints the peak resident memory of each way side by side.

Run: ``.venv/bin/python bench/decode_memory.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each step runs in a fresh small process: Linux starts a child's peak-RSS count at its
# parent's size, so the parent must never hold the picture.
MAKE = """
import sys
import numpy as np
from PIL import Image
ramp = (np.indices((8000, 8000)).sum(0) % 256).astype(np.uint8)
Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], -1)).save(sys.argv[1])
"""

MEASURE = """
import resource, sys
from pathlib import Path
path = Path(sys.argv[2])
if sys.argv[1] == "autodl":
    from backend.images.decode import read_picture
    read_picture(path, 64_000_000)
else:
    from PIL import Image, ImageOps
    with Image.open(path) as image:
        image.load()
        small = ImageOps.exif_transpose(image).copy().convert("RGB")
        small.thumbnail((256, 256))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def python(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'picture':<22} {'plain Pillow':>14} {'autodl':>10}")
        for fmt in ("JPEG", "PNG"):
            path = Path(folder) / f"big.{fmt.lower()}"
            python(MAKE, str(path))
            pillow, autodl = (int(python(MEASURE, way, str(path))) for way in ("pillow", "autodl"))
            print(f"{'64 MP ' + fmt:<22} {pillow:>11} MB {autodl:>7} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
