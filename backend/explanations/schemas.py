from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ExplanationOut(BaseModel):
    image_id: int
    status: Literal["computing", "ready", "failed"]
    label: str | None  # the class whose evidence the heatmap shows (the model's answer)
    error: str | None
    url: str | None  # the PNG, once ready
