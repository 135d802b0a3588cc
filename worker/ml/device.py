"""Which device a step runs on, and how it is named in a run's report."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_name(device: str) -> str:
    """``cuda:0 (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
