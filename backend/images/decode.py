"""Decode an untrusted file as a picture: allowed formats only, pixel cap, full decode."""

from __future__ import annotations

import io
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Pillow format ids that may be opened; every other decoder Pillow ships stays unused.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
THUMBNAIL_PX = 256
SUPPORTED_WORDS = "JPEG, PNG, WebP, GIF, BMP, TIFF"

NOT_A_PICTURE = f"This file is not a picture (supported: {SUPPORTED_WORDS})."
DAMAGED = "This picture is damaged or incomplete: it could not be fully read."
ARCHIVE = (
    "This is an archive, not a picture. Only .zip files are unpacked, and only when uploaded "
    "on their own, not inside another archive."
)

_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"\x1f\x8b")


class NotAPicture(Exception):
    """The file cannot become an image of the project; ``reason`` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Picture:
    format: str
    width: int
    height: int
    thumbnail_jpeg: bytes


class PixelBudget:
    """The pixels one request may still decode (``AUTODL_MAX_REQUEST_PIXELS``): an upload
    or a prediction cannot keep the API's CPU busy decoding without end."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.left = pixels
        self._lock = threading.Lock()  # an upload decodes in several threads

    def spend(self, size: tuple[int, int]) -> None:
        width, height = size
        with self._lock:
            if width * height > self.left:
                raise NotAPicture(
                    f"Not decoded: the pictures of this request hold more than "
                    f"{self.pixels / 1e6:g} megapixels in total. Send them in smaller batches."
                )
            self.left -= width * height


def read_picture(path: Path, max_pixels: int, budget: PixelBudget | None = None) -> Picture:
    """Verify ``path`` is a whole picture of an allowed format and make its thumbnail.

    The size is checked from the header before any pixel is decoded (against the per-picture
    limit and the request's ``budget``); a decompression-bomb warning from Pillow counts as
    an error; truncated files fail (LOAD_TRUNCATED_IMAGES stays False). Width and height are
    after EXIF orientation. The full-size pixels are turned and shrunk in place, so a
    picture costs about one copy of itself in memory, not four. JPEGs are decoded in draft
    mode, scaled by 1/2 to 1/8 in the DCT domain to no less than twice the thumbnail size
    (what Pillow's ``thumbnail`` asks for): every byte of the file is still decoded, so a
    truncated or corrupt file still fails, at a fraction of the cost and memory.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(path, formats=ALLOWED_FORMATS) as image:
                _check_pixels(image.size, max_pixels)
                if budget is not None:
                    budget.spend(image.size)
                width, height = image.size
                if image.format in ("JPEG", "MPO"):
                    image.draft(None, (2 * THUMBNAIL_PX, 2 * THUMBNAIL_PX))
                image.load()  # GIF and TIFF: the first frame
                fmt = "JPEG" if image.format == "MPO" else str(image.format)
                if _orient_in_place(image) in _SWAPS_SIDES:
                    width, height = height, width
                return Picture(fmt, width, height, _thumbnail(image))
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise NotAPicture(_too_many_pixels_reason(max_pixels)) from exc
        except UnidentifiedImageError as exc:
            raise NotAPicture(ARCHIVE if _looks_like_archive(path) else NOT_A_PICTURE) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow reports truncated or corrupt data with any of these.
            raise NotAPicture(DAMAGED) from exc


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise NotAPicture(DAMAGED)
    if width * height > max_pixels:
        raise NotAPicture(
            f"This picture is too large: {width} x {height} pixels is over the limit of "
            f"{max_pixels / 1e6:g} megapixels."
        )


def _too_many_pixels_reason(max_pixels: int) -> str:
    return f"This picture has too many pixels (the limit is {max_pixels / 1e6:g} megapixels)."


def _looks_like_archive(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(262)
    return head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar"


_ORIENTATION = 0x0112
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn by 90 degrees


def _orient_in_place(image: PILImage.Image) -> int:
    """Apply the EXIF orientation; returns the orientation applied (1: none)."""
    try:
        orientation = int(image.getexif().get(_ORIENTATION, 1))
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # malformed EXIF must not cost the user the picture
        logger.warning("ignoring unreadable EXIF orientation", exc_info=True)
        return 1
    return orientation if 1 <= orientation <= 8 else 1


# Modes Pillow resamples as they are; others (palette, 16-bit, CMYK) become RGB first.
_RESAMPLED_AS_IS = frozenset({"RGB", "RGBA", "L", "LA"})


def _thumbnail(image: PILImage.Image) -> bytes:
    """A JPEG thumbnail; ``image`` is shrunk in place (its full-size pixels are let go)."""
    if image.mode in _RESAMPLED_AS_IS:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        small = _to_rgb(image)
    else:
        small = _to_rgb(image)
        small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85)
    return out.getvalue()


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB for a JPEG thumbnail: transparency onto white, high bit depths stretched to 8 bits."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        return PILImage.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
