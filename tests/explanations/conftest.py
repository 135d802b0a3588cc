"""Explanation tests train a real linear run on the runs tests' Redis, in-process."""

from tests.runs.conftest import redis_url, small_project  # noqa: F401  (fixtures)
