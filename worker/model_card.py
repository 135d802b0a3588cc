"""MODEL_CARD.md: what a downloaded model classifies, how well, and what it was not made for."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from backend import __version__
from backend.runs.schemas import AutoDecision, RunMetrics, TrainedModel


@dataclass(frozen=True)
class CardFacts:
    project: str
    run_id: int
    mode: str
    backbone: str
    weights_source: str
    labels: Sequence[str]
    counts: Mapping[str, Mapping[str, int]]  # label -> split -> images
    metrics: RunMetrics
    input_size: int
    mean: Sequence[float]
    std: Sequence[float]
    trained_at: datetime
    decision: AutoDecision | None = None
    model: TrainedModel | None = None  # what was trained: backbones and head, as the API says
    # An ensemble's inputs: (backbone, input size) per backbone, in the graph's order.
    inputs: Sequence[tuple[str, int]] = ()


WEIGHTS_WORDS = {
    "bundled": "ImageNet-1k weights shipped with autodl",
    "cached": "ImageNet weights from the local cache",
    "imported": "weights imported with `autodl weights import`",
    "download": "ImageNet weights downloaded from the Hugging Face hub",
    "scratch": "no pretrained weights (trained from scratch)",
}
METHOD_WORDS = {
    "linear": "transfer learning with a frozen pretrained backbone and a trained "
    "classifier head (linear probe)",
    "finetune": "fine-tuning a pretrained network on these pictures",
    "auto": "chosen automatically",
}
INTENDED_USE = [
    "## Intended use",
    "",
    "Sorting pictures like the training pictures into the classes above, with a person "
    "checking the answers that matter. The probabilities are the model's confidence; "
    "they are not calibrated guarantees.",
]
FILES = [
    "## Files",
    "",
    "- `model.onnx`: the network (input `input`, N x 3 x H x W float32; output "
    "`probabilities`, N x classes)",
    "- `labels.json`, `preprocess.json`: class names and input preparation",
    "- `predict.py`, `autodl_preprocess.py`: `python predict.py IMAGE_OR_FOLDER [--top 3] "
    "[--json] [--csv out.csv]`",
    "- `requirements.txt`: `pip install -r requirements.txt` "
    "(Python 3.10+; onnxruntime, Pillow, numpy)",
]


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
    sections = [
        _summary(facts),
        _how_it_was_made(facts),
        _training_data(facts),
        _validation_results(facts.metrics),
        INTENDED_USE,
        _limits(facts),
        FILES,
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _summary(facts: CardFacts) -> list[str]:
    return [
        f"# Model card: {md(facts.project)} (autodl run {facts.run_id})",
        "",
        f"An image classifier that sorts a picture into one of {len(facts.labels)} classes: "
        + ", ".join(f"**{md(name)}**" for name in facts.labels)
        + ".",
    ]


def _how_it_was_made(facts: CardFacts) -> list[str]:
    weights = WEIGHTS_WORDS.get(facts.weights_source, facts.weights_source or "unknown weights")
    return [
        "## How it was made",
        "",
        f"- Method: {_method(facts.mode, facts.decision)}",
        *_members(facts, weights),
        f"- Input: RGB, {_sizes(facts)}, "
        f"normalized with mean {list(facts.mean)} and std {list(facts.std)} "
        "(`predict.py` does this for you)",
        *_featurized(facts),
        f"- Trained: {facts.trained_at:%Y-%m-%d %H:%M} UTC with autodl {__version__}",
    ]


def _featurized(facts: CardFacts) -> list[str]:
    """Which runtime and precision computed the embeddings the classifier learnt from."""
    return [
        f"- Features of `{backbone}`: training pictures with {used.train}, validation and "
        f"test pictures with {used.held_out} (as this model runs); {used.reason}"
        for backbone, used in facts.metrics.runtimes.items()
    ]


def _members(facts: CardFacts, weights: str) -> list[str]:
    """The backbone(s) the model runs and the classifier on top, as trained."""
    model = facts.model
    backbones = list(model.backbones) if model else [facts.backbone]
    lines = (
        [f"- Backbone: `{backbones[0]}` with {weights}"]
        if len(backbones) == 1
        else [
            f"- Backbones: an ensemble of {len(backbones)}, every one run on each picture: "
            + ", ".join(f"`{b}`" for b in backbones)
            + f", with {weights}"
        ]
    )
    if model:
        lines.append(f"- Classifier: {model.head}")
    ensemble = facts.metrics.ensemble
    if ensemble is not None and len(ensemble.members) > 1:
        lines.append(
            "- Members: "
            + "; ".join(
                f"{' + '.join(f'`{b}`' for b in m.backbones)} (weight {m.weight:.2f}, C {m.C:g})"
                for m in ensemble.members
            )
        )
    return lines


def _sizes(facts: CardFacts) -> str:
    if len(facts.inputs) > 1:
        return "one input per backbone: " + ", ".join(
            f"{size} x {size} px for `{b}`" for b, size in facts.inputs
        )
    return f"{facts.input_size} x {facts.input_size} px"


def _training_data(facts: CardFacts) -> list[str]:
    lines = [
        "## Training data",
        "",
        "| label | train | validation | test |",
        "|---|---:|---:|---:|",
    ]
    for name in facts.labels:
        c = facts.counts.get(name, {})
        lines.append(
            f"| {md(name)} | {c.get('train', 0)} | {c.get('val', 0)} | {c.get('test', 0)} |"
        )
    return lines


def _validation_results(m: RunMetrics) -> list[str]:
    lines = [
        "## Validation results",
        "",
        f"Measured on {m.n_val} validation pictures that the model never trained on.",
        "",
        f"- Accuracy: **{_pct(m.accuracy)}**",
        f"- Balanced accuracy (mean recall over classes): **{_pct(m.balanced_accuracy)}**",
        "",
        "| label | precision | recall | F1 | pictures |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in m.per_class.items():
        lines.append(
            f"| {md(name)} | {_pct(s.precision)} | {_pct(s.recall)} | {_pct(s.f1)} | {s.support} |"
        )
    cm = m.confusion_matrix
    lines += ["", "Confusion matrix (rows: true label, columns: predicted):", ""]
    lines.append("| true \\ predicted | " + " | ".join(md(n) for n in cm.labels) + " |")
    lines.append("|---|" + "---:|" * len(cm.labels))
    for name, row in zip(cm.labels, cm.matrix, strict=True):
        lines.append(f"| {md(name)} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _limits(facts: CardFacts) -> list[str]:
    n = len(facts.labels)
    lo, hi = facts.metrics.accuracy_interval
    return [
        "## Limits",
        "",
        f"- It only knows these {n} classes: any other picture is still forced "
        'into one of them. There is no "none of these" answer.',
        f"- With {facts.metrics.n_val} validation pictures the accuracy above is an "
        f"estimate; a different sample of pictures could score a few points higher or lower "
        f"(95 % range {_pct(lo)} to {_pct(hi)}).",
        "- The backbone learned from everyday photographs (ImageNet). It was not made for, "
        "and this model was not tested on, grayscale medical scans, X-rays, microscopy, "
        "spectrograms, satellite or multi-spectral images, drawings or screenshots.",
        "- Pictures taken with other cameras, lighting, backgrounds or framing than the "
        "training pictures may be classified worse than the figures above say.",
        "- It must not be used alone for decisions about people, health or safety.",
    ]


def _method(mode: str, decision: AutoDecision | None) -> str:
    text = METHOD_WORDS.get(mode, mode)
    if decision is not None and decision.reason:
        text += f" — {decision.reason}"
    return text
