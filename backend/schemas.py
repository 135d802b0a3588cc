"""Types shared by every domain's schemas: bounded row ids and the error bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field

# Primary keys are INTEGER columns: 32 bits on PostgreSQL, 64 on SQLite. A larger id can name
# no row, and the drivers raise on it (a 500), so it is refused as invalid input instead.
MAX_ROW_ID = 2**31 - 1

RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
