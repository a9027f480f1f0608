"""Fixtures shared by every test package: a private redis-server and both store backends."""

from __future__ import annotations

import os

import pytest

from tests.helpers import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    """The store backend under test: None (memory) or a fresh Redis URL."""
    if request.param == "memory":
        return None
    return request.getfixturevalue("redis_url")


LONG_TESTS = os.environ.get("CLASSROOM_LONG_TESTS", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (a soak or a slow real-network run whose behaviour a faster
    test also checks) run only with CLASSROOM_LONG_TESTS=1 (docs/benchmarks.md says when)."""
    if LONG_TESTS:
        return
    skip = pytest.mark.skip(reason="long test: set CLASSROOM_LONG_TESTS=1 to run it")
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(skip)
