"""One Grad-CAM heatmap: a run's model, one image, a PNG beside the run's artifacts."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.config import get_settings
from backend.db import session_scope
from backend.explanations.service import find_explanation
from backend.images.models import Image
from backend.runs.models import Run
from backend.storage import ImageStore, atomic_path, publish_run_file, recorded_file
from worker.ml.errors import MLError

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _classifier(torchscript: str, backbone: str) -> tuple[Any, list[str], Any]:
    """A run's eager classifier, kept per worker process (building one takes a second)."""
    from worker.ml.explain import load_classifier

    return load_classifier(Path(torchscript), backbone)


def explain_image(run_id: int, image_id: int) -> str:
    """Compute the heatmap of ``image_id`` under ``run_id``'s model unless it is done."""
    from backend.inference.preprocess import load_image
    from worker.ml.explain import gradcam_overlay

    settings = get_settings()
    with session_scope() as session:
        row = find_explanation(session, run_id, image_id)
        run = session.get(Run, run_id)
        image = session.get(Image, image_id)
        if row is None or row.status != "computing" or run is None or image is None:
            return "skipped"
        scripted = next((a.path for a in run.artifacts if a.format == "torchscript"), None)
        backbone, picture = run.backbone, ImageStore(settings).blob_path(image.sha256)
    target = settings.run_dir(run_id) / "explanations" / f"{image_id}.png"
    try:
        if scripted is None:
            raise MLError("This run has no TorchScript model to explain.")
        model, labels, preprocess = _classifier(str(recorded_file(scripted)), backbone)
        with torch.no_grad():
            logits = model(torch.from_numpy(load_image(picture, preprocess)).unsqueeze(0))
        answer = int(np.argmax(logits[0].numpy()))
        png = gradcam_overlay(model, preprocess, picture, answer)
        with atomic_path(target) as tmp:
            tmp.write_bytes(png)
        recorded = publish_run_file(run_id, target)
        values: dict[str, Any] = {"status": "ready", "label": labels[answer], "path": recorded}
    except MLError as exc:
        values = {"status": "failed", "error": str(exc)}
    except Exception as exc:
        log.exception("heatmap of image %s under run %s failed", image_id, run_id)
        values = {
            "status": "failed",
            "error": f"The heatmap could not be computed ({type(exc).__name__}: {exc}).",
        }
    with session_scope() as session:
        row = find_explanation(session, run_id, image_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)
    return str(values["status"])
