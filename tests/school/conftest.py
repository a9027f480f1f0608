"""The school database under test: SQLite in a temporary library, or a real redis-server."""

from __future__ import annotations

import pytest

from signaling.config import Config
from signaling.school.db import open_school_db


@pytest.fixture(params=["sqlite", "redis"])
async def school_db(request, tmp_path):
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    db = open_school_db(Config(library=tmp_path, redis_url=redis_url))
    await db.start()
    yield db
    await db.close()
