"""Training modes: one strategy per file, each registered under its RunMode (base.MODES)."""

from worker.modes import auto, finetune, linear
from worker.modes.base import MODES, get_mode

__all__ = ["MODES", "auto", "finetune", "get_mode", "linear"]
