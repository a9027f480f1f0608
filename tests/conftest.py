"""Fixtures shared by every test package: a private redis-server and both store backends."""

from __future__ import annotations

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
