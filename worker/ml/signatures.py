"""Picture signatures for near-duplicate detection, cached per image hash.

A signature is what the data doctor needs from a picture besides its embedding: a
perceptual hash of the picture and of its mirror image (``imagehash``), how colourful it
is, and ORB keypoints of both orientations (OpenCV) for geometric verification. Two
pictures are the same photo (resized, recompressed, cropped or flipped) when enough ORB
matches agree on one similarity transform; different photos of one subject do not
(docs/benchmarks.md: 81 or more inliers for planted copies, at most 13 between the 398
distinct hymenoptera photos).

Signatures are computed from the stored 256 px thumbnails and cached like embeddings:
one file per SHA-256 under ``cache_dir/signatures/<version>/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import imagehash
import numpy as np
from PIL import Image, ImageOps

from backend.storage import atomic_path

log = logging.getLogger(__name__)
# The thread pools here and in the doctor give each picture or pair a core; OpenCV's and
# faiss's own threads would only contend.
cv2.setNumThreads(1)
faiss.omp_set_num_threads(1)

SIGNATURE_VERSION = "v2"
SIDE_PX = 256
ORB_FEATURES = 300
# Mean spread between the strongest and weakest colour channel (0-255) under which a
# picture counts as grayscale: JPEG chroma noise stays below it, faded colour does not.
GRAY_SPREAD = 4.0
RATIO_TEST = 0.8
RANSAC_PX = 4.0
MIN_MATCHES = 8


@dataclass(frozen=True)
class Signature:
    """Hashes, colourfulness and ORB features of one picture."""

    phash: np.ndarray  # 8 bytes: the 64-bit perceptual hash, packed
    phash_mirror: np.ndarray  # the same of the left-right mirror image
    colour_spread: float
    points: np.ndarray  # (K, 2) float32 keypoint positions
    descriptors: np.ndarray  # (K, 32) uint8 ORB descriptors
    points_mirror: np.ndarray
    descriptors_mirror: np.ndarray

    @property
    def is_grayscale(self) -> bool:
        return self.colour_spread < GRAY_SPREAD


def _orb(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=10)  # type: ignore[attr-defined]
    keypoints, descriptors = orb.detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    points = np.array([k.pt for k in keypoints], dtype=np.float32)
    return points, np.asarray(descriptors, np.uint8)


def _packed(hash_: imagehash.ImageHash) -> np.ndarray:
    return np.packbits(np.asarray(hash_.hash, dtype=bool).ravel())


def picture_signature(path: str | Path) -> Signature:
    """The signature of one picture file (any size; it is reduced to 256 px first)."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    image.thumbnail((SIDE_PX, SIDE_PX))
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    small = np.asarray(image.resize((64, 64)), dtype=np.int16)
    spread = float((small.max(axis=2) - small.min(axis=2)).mean())
    gray = np.asarray(image.convert("L"))
    points, descriptors = _orb(gray)
    points_mirror, descriptors_mirror = _orb(np.ascontiguousarray(gray[:, ::-1]))
    return Signature(
        phash=_packed(imagehash.phash(image)),
        phash_mirror=_packed(imagehash.phash(mirror)),
        colour_spread=spread,
        points=points,
        descriptors=descriptors,
        points_mirror=points_mirror,
        descriptors_mirror=descriptors_mirror,
    )


class SignatureCache:
    """One ``<sha256>.sig`` per picture, two-level fan-out, written whole or not at all.

    The format is one flat buffer (hashes, spread, keypoint counts, then the arrays):
    reading 5,000 of them must take a second, not the twenty that ``.npz`` files took."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = Path(cache_dir) / "signatures" / SIGNATURE_VERSION

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.sig"

    def get(self, sha: str) -> Signature | None:
        try:
            return _unpack(self._path(sha).read_bytes())
        except (FileNotFoundError, ValueError, OSError):
            return None  # absent, or damaged: recompute and overwrite

    def put(self, sha: str, signature: Signature) -> None:
        with atomic_path(self._path(sha)) as tmp:
            tmp.write_bytes(_pack(signature))


_HEADER = np.dtype([("spread", "<f4"), ("n", "<i4"), ("n_mirror", "<i4")])


def _pack(s: Signature) -> bytes:
    header = np.array([(s.colour_spread, len(s.points), len(s.points_mirror))], dtype=_HEADER)
    parts = [s.phash, s.phash_mirror, header, s.points, s.descriptors]
    parts += [s.points_mirror, s.descriptors_mirror]
    return b"".join(np.ascontiguousarray(part).tobytes() for part in parts)


def _unpack(data: bytes) -> Signature:
    header = np.frombuffer(data, dtype=_HEADER, count=1, offset=16)[0]
    n, n_mirror = int(header["n"]), int(header["n_mirror"])
    offset = 16 + _HEADER.itemsize

    def take(dtype: str, count: int, shape: tuple[int, int]) -> np.ndarray:
        nonlocal offset
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += array.nbytes
        return array

    signature = Signature(
        phash=np.frombuffer(data, np.uint8, 8, 0),
        phash_mirror=np.frombuffer(data, np.uint8, 8, 8),
        colour_spread=float(header["spread"]),
        points=take("<f4", n * 2, (n, 2)),
        descriptors=take("u1", n * 32, (n, 32)),
        points_mirror=take("<f4", n_mirror * 2, (n_mirror, 2)),
        descriptors_mirror=take("u1", n_mirror * 32, (n_mirror, 32)),
    )
    if offset != len(data):
        raise ValueError("damaged signature file")
    return signature


def _signature_or_none(path: str | Path) -> Signature | None:
    try:
        return picture_signature(path)
    except Exception as exc:  # an unreadable picture is left out, not fatal
        log.warning("cannot read picture %s: %s", path, exc)
        return None


def picture_signatures(
    items: Sequence[tuple[str, str | Path]], cache_dir: Path, threads: int | None = None
) -> tuple[list[Signature | None], int]:
    """Signatures of ``items`` ((sha256, path) pairs) in order, and how many were computed.

    Cached ones are read; the others are computed in a thread pool (PIL and OpenCV
    release the GIL) and cached. An unreadable picture gives None.
    """
    cache = SignatureCache(cache_dir)
    found: dict[str, Signature | None] = {}
    todo: dict[str, str | Path] = {}
    for sha, path in items:
        if sha in found or sha in todo:
            continue
        cached = cache.get(sha)
        if cached is None:
            todo[sha] = path
        else:
            found[sha] = cached
    if todo:
        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            computed = pool.map(_signature_or_none, todo.values())
            for sha, signature in zip(todo, computed, strict=True):
                found[sha] = signature
                if signature is not None:
                    cache.put(sha, signature)
    return [found[sha] for sha, _ in items], len(todo)


def hash_distance(a: Signature, b: Signature) -> int:
    """Bits that differ between two perceptual hashes, the mirror image allowed."""
    plain = int(np.unpackbits(a.phash ^ b.phash).sum())
    mirrored = int(np.unpackbits(a.phash ^ b.phash_mirror).sum())
    return min(plain, mirrored)


def hash_matrix(signatures: Sequence[Signature]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes as uint64 columns (plain, mirror) for all-pairs distances."""
    plain = np.array([s.phash.view(">u8")[0] for s in signatures], dtype=np.uint64)
    mirror = np.array([s.phash_mirror.view(">u8")[0] for s in signatures], dtype=np.uint64)
    return plain, mirror


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every row of ``a`` and every row of ``b`` (uint8 rows of
    one length), as an ``(len(a), len(b))`` int32 matrix: faiss's popcount kernel."""
    a, b = np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(b, np.uint8)
    distances = np.empty((len(a), len(b)), dtype=np.int32)
    faiss.hammings(  # type: ignore[attr-defined]  # SWIG-generated, not in faiss's stubs
        faiss.swig_ptr(a), faiss.swig_ptr(b), len(a), len(b), a.shape[1], faiss.swig_ptr(distances)
    )
    return distances


def ratio_matches(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``query`` whose nearest ``train`` descriptor (Hamming) is clearly nearer than
    the second nearest (Lowe's ratio test; a tie is not clear), and those nearest rows.

    The same matches as OpenCV's brute-force ``knnMatch`` with k = 2, in a fifth of the
    time on these 300-point sets: one faiss distance matrix and three numpy passes
    instead of one Python object per match (docs/benchmarks.md)."""
    distances = hamming_distances(query, train)
    rows = np.arange(len(distances))
    nearest = distances.argmin(axis=1)
    first = distances[rows, nearest]
    distances[rows, nearest] = np.iinfo(np.int32).max
    second = distances.min(axis=1)
    good = np.flatnonzero(first < RATIO_TEST * second)
    return good, nearest[good]


def matching_points(a: Signature, b: Signature, enough: int | None = None) -> int:
    """ORB matches of ``a`` and ``b`` that one similarity transform explains (RANSAC
    inliers), the better of ``b`` as it is and mirrored. The orientation whose perceptual
    hash is closer is tried first, and the other not at all once ``enough`` are found."""
    if len(a.descriptors) < MIN_MATCHES:
        return 0
    orientations = [(b.points, b.descriptors), (b.points_mirror, b.descriptors_mirror)]
    plain = int(np.bitwise_count(a.phash ^ b.phash).sum())
    if int(np.bitwise_count(a.phash ^ b.phash_mirror).sum()) < plain:
        orientations.reverse()
    best = 0
    for points, descriptors in orientations:
        if len(descriptors) < MIN_MATCHES:
            continue
        query, train = ratio_matches(a.descriptors, descriptors)
        # RANSAC keeps at most the matches it is given: too few cannot make ``enough``.
        if len(query) < max(MIN_MATCHES, enough or 0):
            continue
        transform, mask = cv2.estimateAffinePartial2D(
            a.points[query], points[train], method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX
        )
        if transform is not None and mask is not None:
            best = max(best, int(mask.sum()))
        if enough is not None and best >= enough:
            break
    return best
