"""MODEL_CARD.md: what a downloaded model classifies, how well, and what it was not made for."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend import __version__


@dataclass(frozen=True)
class CardFacts:
    project: str
    run_id: int
    mode: str
    backbone: str
    weights_source: str
    labels: Sequence[str]
    counts: Mapping[str, Mapping[str, int]]  # label -> split -> images
    metrics: Mapping[str, Any]
    input_size: int
    mean: Sequence[float]
    std: Sequence[float]
    trained_at: datetime
    decision: Mapping[str, Any] | None = None


WEIGHTS_WORDS = {
    "bundled": "ImageNet-1k weights shipped with autodl",
    "cached": "ImageNet weights from the local cache",
    "imported": "weights imported with `autodl weights import`",
    "download": "ImageNet weights downloaded from the Hugging Face hub",
    "scratch": "no pretrained weights (trained from scratch)",
}


# Markdown punctuation that could start emphasis, a link, a heading, code or a table cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md(text: object) -> str:
    """A user's text (label or project name) as literal Markdown: HTML tags and entities are
    escaped, punctuation is backslash-escaped, and a newline cannot end a table row."""
    escaped = html.escape(" ".join(str(text).split()), quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def render_model_card(facts: CardFacts) -> str:
    m = facts.metrics
    labels = list(facts.labels)
    lines = [
        f"# Model card: {md(facts.project)} (autodl run {facts.run_id})",
        "",
        f"An image classifier that sorts a picture into one of {len(labels)} classes: "
        + ", ".join(f"**{md(name)}**" for name in labels)
        + ".",
        "",
        "## How it was made",
        "",
        f"- Method: {_method(facts.mode, facts.decision)}",
        f"- Backbone: `{facts.backbone}` with "
        f"{WEIGHTS_WORDS.get(facts.weights_source, facts.weights_source or 'unknown weights')}",
        f"- Input: RGB, {facts.input_size} x {facts.input_size} px, "
        f"normalized with mean {list(facts.mean)} and std {list(facts.std)} "
        "(`predict.py` does this for you)",
        f"- Trained: {facts.trained_at:%Y-%m-%d %H:%M} UTC with autodl {__version__}",
        "",
        "## Training data",
        "",
        "| label | train | validation | test |",
        "|---|---:|---:|---:|",
    ]
    for name in labels:
        c = facts.counts.get(name, {})
        lines.append(
            f"| {md(name)} | {c.get('train', 0)} | {c.get('val', 0)} | {c.get('test', 0)} |"
        )
    lines += [
        "",
        "## Validation results",
        "",
        f"Measured on {m.get('n_val', '?')} validation pictures that the model never trained on.",
        "",
        f"- Accuracy: **{_pct(m['accuracy'])}**",
        f"- Balanced accuracy (mean recall over classes): **{_pct(m['balanced_accuracy'])}**",
        "",
        "| label | precision | recall | F1 | pictures |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in m.get("per_class", {}).items():
        lines.append(
            f"| {md(name)} | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['f1'])} "
            f"| {s['support']} |"
        )
    cm = m.get("confusion_matrix", {})
    if cm:
        lines += ["", "Confusion matrix (rows: true label, columns: predicted):", ""]
        lines.append("| true \\ predicted | " + " | ".join(md(n) for n in cm["labels"]) + " |")
        lines.append("|---|" + "---:|" * len(cm["labels"]))
        for name, row in zip(cm["labels"], cm["matrix"], strict=True):
            lines.append(f"| {md(name)} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Intended use",
        "",
        "Sorting pictures like the training pictures into the classes above, with a person "
        "checking the answers that matter. The probabilities are the model's confidence; "
        "they are not calibrated guarantees.",
        "",
        "## Limits",
        "",
        f"- It only knows these {len(labels)} classes: any other picture is still forced "
        'into one of them. There is no "none of these" answer.',
        f"- With {m.get('n_val', 'few')} validation pictures the accuracy above is an "
        f"estimate; a different sample of pictures could score a few points higher or lower.",
        "- The backbone learned from everyday photographs (ImageNet). It was not made for, "
        "and this model was not tested on, grayscale medical scans, X-rays, microscopy, "
        "spectrograms, satellite or multi-spectral images, drawings or screenshots.",
        "- Pictures taken with other cameras, lighting, backgrounds or framing than the "
        "training pictures may be classified worse than the figures above say.",
        "- It must not be used alone for decisions about people, health or safety.",
        "",
        "## Files",
        "",
        "- `model.onnx`: the network (input `input`, N x 3 x H x W float32; output "
        "`probabilities`, N x classes)",
        "- `labels.json`, `preprocess.json`: class names and input preparation",
        "- `predict.py`, `autodl_preprocess.py`: `python predict.py IMAGE_OR_FOLDER [--top 3] "
        "[--json] [--csv out.csv]`",
        "- `requirements.txt`: `pip install -r requirements.txt` "
        "(Python 3.10+; onnxruntime, Pillow, numpy)",
        "",
    ]
    return "\n".join(lines)


def _method(mode: str, decision: Mapping[str, Any] | None) -> str:
    words = {
        "linear": "transfer learning with a frozen pretrained backbone and a trained "
        "classifier head (linear probe)",
        "finetune": "fine-tuning a pretrained network on these pictures",
        "auto": "chosen automatically",
    }
    text = words.get(mode, mode)
    if decision and decision.get("reason"):
        text += f" — {decision['reason']}"
    return text
