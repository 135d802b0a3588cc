"""Health, metrics and logs tests use a Redis database of their own (flushed around each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import redis_test_db, require_redis

OPS_REDIS_URL = redis_test_db("ops", 13)
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE) and "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = require_redis(OPS_REDIS_URL)
    client.flushdb()
    yield OPS_REDIS_URL
    client.flushdb()
