"""Whether a project's labelled images can train a classifier: one rule for the project
page (before a run is started) and the worker (when a run starts)."""

from __future__ import annotations

from collections.abc import Mapping

MIN_LABELS = 2
MIN_IMAGES_PER_LABEL = 2  # one to train on, one to validate with


def training_blocker(label_counts: Mapping[str, int]) -> str | None:
    """Why images with these counts per label cannot train yet, in a person's words; None
    when they can."""
    used = {name: n for name, n in label_counts.items() if n > 0}
    if not used:
        return (
            "Upload some labelled pictures to start: drop a folder with one sub-folder per label."
        )
    if len(used) < MIN_LABELS:
        return (
            f"At least {MIN_LABELS} labels with images are needed to train a classifier "
            f"(only {next(iter(used))!r} has images). Add images of another class."
        )
    few = sorted(name for name, n in used.items() if n < MIN_IMAGES_PER_LABEL)
    if few:
        listed = ", ".join(f"{name!r} ({used[name]})" for name in few)
        return (
            f"Each label needs at least {MIN_IMAGES_PER_LABEL} images (one to train, one to "
            f"validate); add images to: {listed}."
        )
    return None
