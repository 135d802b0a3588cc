"""Turn uploaded files, zips and folders into stored, deduplicated, verified images.

Used by the upload route and by ``autodl import``. Every file gets a verdict of its own:
accepted, duplicate (same bytes already in the project) or rejected with a reason in
plain words. One bad file never costs the good ones, and nothing is half-stored: a
database row is written only after the blob and its thumbnail are in place.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.archives import (
    Entry,
    Refused,
    RefusedEntry,
    ZipReader,
    is_hidden,
    safe_parts,
    too_large,
)
from backend.config import Settings
from backend.errors import InsufficientStorage, InvalidInput, OutOfDiskSpace, is_disk_full
from backend.images.decode import NotAPicture, Picture, PixelBudget, read_picture
from backend.images.models import SPLITS, Image
from backend.projects.models import Label, Project, label_key
from backend.projects.schemas import label_name
from backend.projects.service import LabelNameClash, find_label, next_label_color
from backend.storage import FileTooLarge, ImageStore, StagedFile

logger = logging.getLogger(__name__)

FILENAME_MAX_CHARS = 255
NESTED_ARCHIVE_SUFFIXES = frozenset(
    {".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

COULD_NOT_READ = (
    "This file could not be read; it was not added. Try saving it again as JPEG or PNG."
)
EMPTY = "This file is empty (0 bytes)."
HIDDEN = "Skipped: a hidden or system file, not a picture."
NESTED_ARCHIVE = (
    "Skipped: archives are not unpacked inside a zip or a folder. Upload that archive on its own."
)


@dataclass(frozen=True)
class UploadSource:
    """One file as received: its name as given by the client and a readable binary stream."""

    filename: str
    fileobj: IO[bytes]


@dataclass(frozen=True)
class Accepted:
    id: int
    filename: str
    label: str | None
    split: str | None


@dataclass(frozen=True)
class Duplicate:
    filename: str
    id: int


@dataclass(frozen=True)
class Rejected:
    filename: str
    reason: str


@dataclass
class IngestReport:
    accepted: list[Accepted] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def parse_split(value: str | None) -> str | None:
    """``train``, ``val``, ``test`` (any case, spaces around) or nothing; else a 422."""
    if value is None or not value.strip(" "):
        return None
    split = value.strip(" ").lower()
    if split not in SPLITS:
        raise InvalidInput(f"split must be one of train, val or test (got {value!r}).")
    return split


def parse_label(value: str | None) -> str | None:
    """A label name given by hand; blank (spaces) means none, an unusable name is a 422."""
    if value is None or not value.strip(" "):
        return None
    try:
        return label_name(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def ingest_files(
    session: Session,
    settings: Settings,
    project: Project,
    sources: Iterable[UploadSource],
    *,
    label: str | None,
    split: str | None,
) -> IngestReport:
    """Add pictures and .zip files to ``project``; ``label``/``split`` apply where the folders
    of a zip entry or of a relative file name (``train/ants/x.jpg``) do not say otherwise."""
    with _Ingest(session, settings, project) as run:
        run.check_quota()
        label, split = parse_label(label), parse_split(split)
        if label:
            run.label(label)  # a clash with an existing label's name is a 409 before any work
        run.add_sources(sources, label, split)
    return run.report


def _add_sources(
    run: _Ingest, sources: Iterable[UploadSource], label: str | None, split: str | None
) -> None:
    for source in sources:
        name = _basename(source.filename)
        if is_hidden(name):
            run.reject(source.filename, HIDDEN)
        elif name.lower().endswith(".zip"):
            run.add_zip(source, label, split)
        else:
            folder_split, folder_label = _folders_in_filename(source.filename)
            run.add_file(
                source.filename,
                name,
                source.fileobj,
                folder_label or label,
                folder_split or split,
            )


def _folders_in_filename(filename: str) -> tuple[str | None, str | None]:
    """A dropped folder's files arrive as ``train/ants/x.jpg``: the same rules as a zip's
    folders apply. Paths that could escape a folder are ignored, only the name is kept."""
    if "/" not in filename:
        return None, None
    try:
        parts = safe_parts(filename)
    except Refused:
        return None, None
    split, label = _placement(parts[:-1])
    return split, label_name(label) if label else None


def ingest_directory(
    session: Session, settings: Settings, project: Project, path: Path
) -> IngestReport:
    """Import a folder laid out like a zip (``train/ants/x.jpg``); a .zip path works too."""
    if path.is_file():
        with path.open("rb") as f:
            return ingest_files(
                session, settings, project, [UploadSource(path.name, f)], label=None, split=None
            )
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a folder or a .zip file.")
    with _Ingest(session, settings, project) as run:
        _walk(run, path)
    return run.report


def _walk(run: _Ingest, path: Path) -> None:
    entries: list[Entry] = []
    for folder, dirs, files in os.walk(path, followlinks=False):
        relative = Path(folder).relative_to(path)
        for name in sorted(dirs):
            if is_hidden(name):
                run.reject(f"{(relative / name).as_posix()}/", HIDDEN)
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in sorted(files):
            file_path = Path(folder) / name
            shown = (relative / name).as_posix()
            if file_path.is_symlink() or not file_path.is_file():
                run.reject(shown, "Skipped: a link or special file, not a regular file.")
                continue
            entries.append(Entry(shown, PurePosixPath(shown).parts, _opener(file_path)))
    run.add_entries(entries, None, None)


def _opener(path: Path) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


@dataclass
class _Pending:
    """A staged file waiting for its verdict: decoding (verification and thumbnail) runs
    in the pool; the verdict, the stored blob and the row follow in upload order."""

    shown: str
    filename: str
    label: str | None
    split: str | None
    staged: StagedFile
    files: ExitStack  # holds the staged temporary file until the verdict
    picture: Future[Picture] | None  # None: nothing to decode (empty, a known duplicate)
    existing: int | None  # the project's image of these bytes when staged (one query)


class _Ingest:
    """One ingestion: the report, the labels and hashes already seen, its zips' budget.

    Files are staged (copied and hashed) one at a time in upload order, as the archive
    walker opens them; up to ``2 x cores`` staged files are decoded at once in a thread
    pool (Pillow releases the GIL), with JPEG draft decoding; the verdicts, blobs and rows
    are then written in upload order by the calling thread, which alone uses the session.
    Memory stays bounded: a handful of staged files, each decoded at thumbnail scale.
    """

    def __init__(self, session: Session, settings: Settings, project: Project) -> None:
        self.session = session
        self.settings = settings
        self.project = project
        self.store = ImageStore(settings)
        self.report = IngestReport()
        self.labels: dict[str, Label] = {}
        self.accepted_sha: dict[str, int] = {}
        self.rejected_sha: dict[str, str] = {}
        self.zips = ZipReader(settings)
        self.pixels = PixelBudget(settings.max_request_pixels)
        self.stored_bytes = _stored_bytes(session, project.owner_id)
        threads = os.cpu_count() or 1
        self.window = 2 * threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ingest")
        self.pending: deque[_Pending] = deque()

    def __enter__(self) -> _Ingest:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                while self.pending:
                    self._settle()
        finally:
            for item in self.pending:  # an error ended the ingestion: drop what was staged
                if item.picture is not None:
                    item.picture.cancel()
            self.pool.shutdown(wait=True)
            for item in self.pending:
                item.files.close()
            self.pending.clear()

    def add_sources(
        self, sources: Iterable[UploadSource], label: str | None, split: str | None
    ) -> None:
        _add_sources(self, sources, label, split)

    def check_quota(self) -> None:
        """507 before reading anything when the owner's storage quota is used up."""
        quota = self.settings.quota_bytes
        if quota and self.stored_bytes >= quota:
            raise InsufficientStorage(
                f"Your storage quota is full: {_mb(self.stored_bytes)} of {_mb(quota)} used. "
                "Delete images or projects you no longer need, or ask an admin for more room."
            )

    def _fits_quota(self, size: int) -> None:
        quota = self.settings.quota_bytes
        if quota and self.stored_bytes + size > quota:
            raise Refused(
                f"Not stored: it would take you over your storage quota of {_mb(quota)} "
                f"({_mb(self.stored_bytes)} used)."
            )

    def reject(self, shown: str, reason: str) -> None:
        """Reject ``shown`` after the verdicts of the files before it (upload order)."""
        while self.pending:
            self._settle()
        self._record_rejection(shown, reason)

    def _record_rejection(self, shown: str, reason: str) -> None:
        self.report.rejected.append(Rejected(shown, reason))

    def add_file(
        self, shown: str, filename: str, fileobj: IO[bytes], label: str | None, split: str | None
    ) -> None:
        """Stage one file for its verdict; raises only OutOfDiskSpace (a 507 for the whole
        request)."""
        self._guarded(shown, lambda: self._add(shown, filename, fileobj, label, split), self.reject)

    def _guarded(
        self, shown: str, action: Callable[[], None], reject: Callable[[str, str], None]
    ) -> None:
        """Run ``action`` for one file: its faults become its rejection, a full disk a 507."""
        try:
            action()
        except OutOfDiskSpace:
            raise
        except (Refused, NotAPicture) as exc:
            reject(shown, exc.reason)
        except LabelNameClash as exc:
            reject(shown, exc.detail)
        except OSError as exc:
            if is_disk_full(exc):
                logger.error("could not store %r: %s", shown, exc)
                raise OutOfDiskSpace() from exc
            logger.exception("could not ingest %r into project %s", shown, self.project.id)
            reject(shown, COULD_NOT_READ)
        except Exception:
            logger.exception("could not ingest %r into project %s", shown, self.project.id)
            reject(shown, COULD_NOT_READ)

    def add_zip(self, source: UploadSource, label: str | None, split: str | None) -> None:
        """Verdicts for every entry of a zip; raises only OutOfDiskSpace."""
        try:
            self._add_zip(source, label, split)
        except OutOfDiskSpace:
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise OutOfDiskSpace() from exc
            logger.exception(
                "could not unpack %r into project %s", source.filename, self.project.id
            )
            self.reject(source.filename, COULD_NOT_READ)
        except Exception:  # entries already reported keep their verdicts
            logger.exception(
                "could not unpack %r into project %s", source.filename, self.project.id
            )
            self.reject(source.filename, COULD_NOT_READ)

    def _add_zip(self, source: UploadSource, label: str | None, split: str | None) -> None:
        try:
            with self.zips.entries(source.fileobj) as members:
                entries = []
                for member in members:
                    if isinstance(member, RefusedEntry):
                        self.reject(member.name, member.reason)
                    else:
                        entries.append(member)
                self.add_entries(entries, label, split)
        except Refused as exc:
            self.reject(source.filename, exc.reason)

    def add_entries(self, entries: Sequence[Entry], label: str | None, split: str | None) -> None:
        """Place each entry by its folders (zip and folder imports share these rules)."""
        candidates = []
        for entry in entries:
            if any(is_hidden(part) for part in entry.parts):
                self.reject(entry.name, HIDDEN)
            elif PurePosixPath(entry.parts[-1]).suffix.lower() in NESTED_ARCHIVE_SUFFIXES:
                self.reject(entry.name, NESTED_ARCHIVE)
            else:
                candidates.append(entry)
        root = _common_root([entry.parts for entry in candidates])
        for entry in candidates:
            folder_split, folder_label = _placement(entry.parts[:-1][1 if root else 0 :])
            try:
                entry_label = label_name(folder_label) if folder_label else label
            except ValueError as exc:
                self.reject(entry.name, f"The folder name cannot be used as a label: {exc}.")
                continue
            try:
                with entry.open() as fileobj:
                    self.add_file(
                        entry.name,
                        _basename(entry.parts[-1]),
                        fileobj,
                        entry_label,
                        folder_split or split,
                    )
            except Refused as exc:
                self.reject(entry.name, exc.reason)
            except OSError:
                logger.warning("could not open %r", entry.name, exc_info=True)
                self.reject(entry.name, COULD_NOT_READ)

    def _add(
        self, shown: str, filename: str, fileobj: IO[bytes], label: str | None, split: str | None
    ) -> None:
        files = ExitStack()
        try:
            staged = files.enter_context(self.store.stage(fileobj, self.settings.max_image_bytes))
        except FileTooLarge as exc:
            files.close()
            raise Refused(too_large(self.settings.max_image_bytes)) from exc
        except BaseException:
            files.close()
            raise
        picture, existing = None, None
        if staged.size and not self._seen(staged.sha256):
            existing = self._existing_id(staged.sha256)
            if existing is None:
                picture = self.pool.submit(
                    read_picture, staged.path, self.settings.max_image_pixels, self.pixels
                )
        item = _Pending(shown, filename, label, split, staged, files, picture, existing)
        self.pending.append(item)
        while len(self.pending) > self.window:
            self._settle()

    def _seen(self, sha256: str) -> bool:
        """These bytes came earlier in this upload (their verdict is or will be known)."""
        return (
            sha256 in self.rejected_sha
            or sha256 in self.accepted_sha
            or any(p.staged.sha256 == sha256 for p in self.pending)
        )

    def _settle(self) -> None:
        """The verdict of the oldest pending file; raises only OutOfDiskSpace."""
        item = self.pending.popleft()
        with item.files:
            self._guarded(item.shown, lambda: self._add_staged(item), self._record_rejection)

    def _add_staged(self, item: _Pending) -> None:
        staged = item.staged
        if staged.size == 0:
            raise Refused(EMPTY)
        if staged.sha256 in self.rejected_sha:
            raise Refused(self.rejected_sha[staged.sha256])
        # The project's copy found when staged; one stored meanwhile by a concurrent request
        # makes the insert below a no-op, answered as a duplicate too.
        existing = self.accepted_sha.get(staged.sha256) or item.existing
        if existing is not None:
            self.report.duplicates.append(Duplicate(item.shown, existing))
            return
        self._fits_quota(staged.size)
        try:
            if item.picture is None:  # its twin was not accepted after all: decode it now
                picture = read_picture(staged.path, self.settings.max_image_pixels, self.pixels)
            else:
                picture = item.picture.result()
        except NotAPicture as exc:
            self.rejected_sha[staged.sha256] = exc.reason
            raise
        label, split = item.label, item.split
        label_row = self.label(label) if label else None
        self.store.put(staged, picture.thumbnail_jpeg)
        image_id = _insert_image(
            self.session,
            project_id=self.project.id,
            label_id=label_row.id if label_row else None,
            split=split,
            split_source="user" if split else None,
            sha256=staged.sha256,
            filename=item.filename,
            format=picture.format,
            width=picture.width,
            height=picture.height,
            size_bytes=staged.size,
        )
        if image_id is None:  # the same bytes arrived meanwhile through another request
            image_id = self._existing_id(staged.sha256)
            if image_id is None:
                raise RuntimeError(f"image {staged.sha256} neither inserted nor found")
            self.report.duplicates.append(Duplicate(item.shown, image_id))
            return
        self.accepted_sha[staged.sha256] = image_id
        self.stored_bytes += staged.size
        self.report.accepted.append(Accepted(image_id, item.filename, label, split))

    def _existing_id(self, sha256: str) -> int | None:
        return self.session.scalar(
            select(Image.id).where(Image.project_id == self.project.id, Image.sha256 == sha256)
        )

    def label(self, name: str) -> Label:
        if name not in self.labels:
            self.labels[name] = ensure_label(self.session, self.project, name)
        return self.labels[name]


def _stored_bytes(session: Session, owner_id: int) -> int:
    """The bytes of every image in the owner's projects (what the quota counts)."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Image.size_bytes), 0))
            .join(Project, Project.id == Image.project_id)
            .where(Project.owner_id == owner_id)
        )
        or 0
    )


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"


def ensure_label(session: Session, project: Project, name: str) -> Label:
    """The project's label called ``name``, created if missing, also when concurrent uploads
    create the same new label at once (the loser of the race reads the winner's row).
    A label whose name differs only in case or Unicode form is a clash, not a match."""
    label = find_label(session, project, name)
    if label is None:
        count = session.scalar(select(func.count()).where(Label.project_id == project.id)) or 0
        values = {
            "project_id": project.id,
            "name": name,
            "name_key": label_key(name),
            "color": next_label_color(count),
        }
        _insert_unless_present(session, Label, values, ["project_id", "name_key"])
        label = find_label(session, project, name)
        if label is None:
            raise RuntimeError(f"label {name!r} neither inserted nor found")
    if label.name != name:
        raise LabelNameClash(name, label.name)
    return label


def _insert_image(session: Session, **values: object) -> int | None:
    """Insert a row unless the project already holds these bytes; returns the new id."""
    return _insert_unless_present(session, Image, values, ["project_id", "sha256"])


def _insert_unless_present(
    session: Session, model: type[Image] | type[Label], values: dict, unique: list[str]
) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: a unique clash with a concurrent request is an
    answer, not an error that would poison the whole transaction. Returns the new id."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=unique)
        .returning(model.id)
    )
    return session.execute(statement).scalar_one_or_none()


def _common_root(paths: Sequence[tuple[str, ...]]) -> bool:
    """True when every file sits under one shared folder that is itself not a label.

    ``hymenoptera/train/ants/x.jpg`` → the root is dropped; ``ants/x.jpg`` keeps ``ants``
    (a single folder of pictures names their label), and ``train/...`` keeps its split.
    """
    if not paths or any(len(parts) < 3 for parts in paths):
        return False
    first = paths[0][0]
    return first.lower() not in SPLITS and all(parts[0] == first for parts in paths)


def _placement(folders: Sequence[str]) -> tuple[str | None, str | None]:
    """(split, label) from the folders above a file: a folder named train/val/test gives
    the split, the nearest other folder the label."""
    split = next((f.lower() for f in folders if f.lower() in SPLITS), None)
    rest = [f for f in folders if f.lower() not in SPLITS]
    return split, (rest[-1] if rest else None)


def _basename(name: str) -> str:
    """The file's own name, without any folders a client put in front of it."""
    base = _CONTROL.sub("", re.split(r"[/\\]", name)[-1]).strip() or "upload"
    if len(base) > FILENAME_MAX_CHARS:
        suffix = PurePosixPath(base).suffix[:16]
        base = base[: FILENAME_MAX_CHARS - len(suffix)] + suffix
    return unicodedata.normalize("NFC", base)
