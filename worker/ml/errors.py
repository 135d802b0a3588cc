"""Errors raised by the ML pipeline; each message is meant to be shown to a person."""

from __future__ import annotations

from collections.abc import Sequence


class MLError(Exception):
    """Base class of the ML pipeline's errors."""


class UnknownBackbone(MLError):
    """The backbone name is neither in the zoo nor a timm model."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"Unknown backbone {name!r}: it is not in the model zoo nor a timm model name.{hint}"
        )


class WeightsUnavailable(MLError):
    """No pretrained weights for this backbone can be found offline."""

    def __init__(self, name: str, bundled: Sequence[str] = ()) -> None:
        self.name = name
        bundled_txt = ", ".join(bundled) if bundled else "none installed"
        super().__init__(
            f"No pretrained weights for {name!r} on this machine and it cannot download them. "
            f"Either (1) pick a backbone whose weights are bundled ({bundled_txt}); "
            f"(2) import a weights file with `autodl weights import FILE --model {name}` "
            "(safetensors preferred); or (3) go online once, or copy a Hugging Face cache "
            "that holds this model, so timm can load it."
        )


class InvalidWeights(MLError):
    """An imported weights file does not fit the model."""


class NotEnoughData(MLError):
    """The labelled images are too few to train and validate a classifier."""


class Cancelled(MLError):
    """The run was cancelled while working."""

    def __init__(self, message: str = "The run was cancelled.") -> None:
        super().__init__(message)
