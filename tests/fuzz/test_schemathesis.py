"""The API answers what its OpenAPI schema says, for any input: schemathesis, --checks all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_hymenoptera
from tests.e2e.server import live_server
from tests.fuzz.run_schemathesis import fuzz, summary

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    require_hymenoptera()
    with live_server(
        tmp_path / "data",
        AUTODL_SIGNUP="open",
        AUTODL_PASSWORD_HASH_TIME_COST="1",
        AUTODL_PASSWORD_HASH_MEMORY_KIB="1024",
    ) as (server, _):
        code, output = fuzz(server, max_time_s=100, folder=tmp_path)
    print(summary(output))
    assert code == 0, output[-20000:]
