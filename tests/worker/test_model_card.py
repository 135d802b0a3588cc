"""MODEL_CARD.md shows label and project names as text, whatever characters they hold."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from backend.runs.schemas import RunMetrics
from worker.model_card import CardFacts, render_model_card

HOSTILE = ["<img src=x onerror=alert(1)>", "a | b", "**bold** [link](http://evil.example)"]


def card(labels: list[str]) -> str:
    per_class = {n: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for n in labels}
    return render_model_card(
        CardFacts(
            project="<b>Insects</b> | *x*",
            run_id=1,
            mode="linear",
            backbone="tf_efficientnet_lite0",
            weights_source="bundled",
            labels=labels,
            counts={n: {"train": 1, "val": 1} for n in labels},
            metrics=RunMetrics.model_validate(
                {
                    "accuracy": 1.0,
                    "balanced_accuracy": 1.0,
                    "macro_f1": 1.0,
                    "log_loss": 0.0,
                    "n_train": len(labels),
                    "n_val": len(labels),
                    "n_test": 0,
                    "per_class": per_class,
                    "confusion_matrix": {
                        "labels": labels,
                        "matrix": [[1] * len(labels)] * len(labels),
                    },
                    "featurized": {"computed": len(labels), "cached": 0, "skipped_unreadable": 0},
                    "timings": {},
                    "weights": {"source": "bundled", "digest": "0" * 64},
                }
            ),
            input_size=224,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            trained_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )


def cells(line: str) -> int:
    """Table cells a Markdown renderer sees: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_label_names_cannot_add_html_links_or_table_cells() -> None:
    lines = card(HOSTILE).splitlines()
    text = "\n".join(lines)
    assert "<img" not in text and "<b>" not in text
    assert "](http" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in text
    tables = [ln for ln in lines if ln.startswith("|")]
    widths = {cells(ln) for ln in tables if not ln.startswith("|---")}
    assert widths == {4, 5}  # training data: label + 3 splits; per class: label + 4 figures
