"""The project's upload history: each request's outcome is kept, and the requests of one
drop (they share the page's upload key) are read back as one upload."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import InvalidInput
from backend.images.ingest import IngestReport
from backend.images.models import Image, UploadBatch
from backend.images.schemas import UploadOut
from backend.projects.models import Project

REJECTED_KEPT = 200  # per request: the reasons a person reads, not an unbounded log
HISTORY_LENGTH = 20
UNASSIGNED = "unassigned"
UPLOAD_KEY_PATTERN = "^[A-Za-z0-9-]{0,64}$"
_UPLOAD_KEY = re.compile(r"[A-Za-z0-9-]{1,64}")


def upload_key(raw: str) -> str:
    """The drop a request belongs to; a request sent without one is an upload by itself."""
    if not raw:
        return uuid.uuid4().hex
    if not _UPLOAD_KEY.fullmatch(raw):
        raise InvalidInput("upload must be 1 to 64 letters, digits or dashes.")
    return raw


def record_batch(session: Session, project: Project, key: str, report: IngestReport) -> None:
    """Keep what became of one request's files, by label and split."""
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"accepted": 0, "duplicates": 0})
    )
    for item in report.accepted:
        counts[item.label or ""][item.split or UNASSIGNED]["accepted"] += 1
    if report.duplicates:
        rows = session.execute(
            select(Image).where(Image.id.in_([d.id for d in report.duplicates]))
        ).scalars()
        for image in rows:
            label = image.label.name if image.label else ""
            counts[label][image.split or UNASSIGNED]["duplicates"] += 1
    session.add(
        UploadBatch(
            project_id=project.id,
            upload_key=key,
            accepted=len(report.accepted),
            duplicates=len(report.duplicates),
            rejected=len(report.rejected),
            counts={label: dict(splits) for label, splits in counts.items()},
            rejected_files=[
                {"filename": r.filename, "reason": r.reason}
                for r in report.rejected[:REJECTED_KEPT]
            ],
        )
    )
    session.flush()


def history(session: Session, project: Project) -> list[UploadOut]:
    """The latest uploads, newest first, each the sum of its requests."""
    batches = session.scalars(
        select(UploadBatch)
        .where(UploadBatch.project_id == project.id)
        .order_by(UploadBatch.id.desc())
        .limit(HISTORY_LENGTH * 50)
    ).all()
    uploads: dict[str, dict[str, Any]] = {}
    for batch in batches:
        upload = uploads.get(batch.upload_key)
        if upload is None:
            if len(uploads) == HISTORY_LENGTH:
                continue
            upload = uploads[batch.upload_key] = {
                "key": batch.upload_key,
                "started_at": batch.created_at,
                "finished_at": batch.created_at,
                "requests": 0,
                "accepted": 0,
                "duplicates": 0,
                "rejected": 0,
                "counts": defaultdict(
                    lambda: defaultdict(lambda: {"accepted": 0, "duplicates": 0})
                ),
                "rejected_files": [],
            }
        upload["started_at"] = min(upload["started_at"], batch.created_at)
        upload["finished_at"] = max(upload["finished_at"], batch.created_at)
        upload["requests"] += 1
        for key in ("accepted", "duplicates", "rejected"):
            upload[key] += getattr(batch, key)
        for label, splits in batch.counts.items():
            for split, numbers in splits.items():
                for key, n in numbers.items():
                    upload["counts"][label][split][key] += n
        upload["rejected_files"].extend(batch.rejected_files)
    return [
        UploadOut(**{**u, "counts": {label: dict(s) for label, s in u["counts"].items()}})
        for u in uploads.values()
    ]
