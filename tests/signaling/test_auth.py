import time

import jwt
import pytest

from signaling.auth import Role, mint_token, verify_token
from signaling.errors import ClassroomError, ErrorCode

SECRET = "s3cret-for-tests-0123456789abcdef-xyz"


def test_round_trip_keeps_claims():
    token = mint_token(SECRET, role="classroom", lesson="l1", school="村小", name="一班", ttl=60)
    claims = verify_token(SECRET, token)
    assert (claims.role, claims.lesson, claims.school, claims.name) == (
        Role.CLASSROOM, "l1", "村小", "一班")
    assert claims.exp - claims.iat == 60
    assert claims.may_access("l1") and not claims.may_access("l2")


def test_expired_token_is_refused():
    token = mint_token(SECRET, role="teacher", lesson="l1", ttl=10, now=time.time() - 100)
    with pytest.raises(ClassroomError) as err:
        verify_token(SECRET, token)
    assert err.value.code == ErrorCode.TOKEN_EXPIRED


@pytest.mark.parametrize("token", [
    mint_token("another-secret-0123456789abcdef-0123", role="teacher", lesson="l1"),
    jwt.encode({"sub": "x", "role": "teacher", "lesson": "l1", "iat": 1, "exp": 2**40},
               key=None, algorithm="none"),
    jwt.encode({"sub": "x", "role": "teacher", "iat": 1, "exp": 2**40}, SECRET, "HS256"),
    jwt.encode({"sub": "x", "role": "wizard", "lesson": "l1", "iat": 1, "exp": 2**40},
               SECRET, "HS256"),
    jwt.encode({"sub": "x", "role": "teacher", "lesson": "*", "iat": 1, "exp": 2**40},
               SECRET, "HS256"),
    "not.a.token", "", None, 42, "x" * 5000,
])
def test_forged_or_malformed_tokens_are_invalid(token):
    with pytest.raises(ClassroomError) as err:
        verify_token(SECRET, token)
    assert err.value.code == ErrorCode.INVALID_TOKEN


def test_admin_may_hold_every_lesson_but_teacher_may_not():
    claims = verify_token(SECRET, mint_token(SECRET, role="admin", lesson="*"))
    assert claims.may_access("anything")
    with pytest.raises(ValueError):
        mint_token(SECRET, role="teacher", lesson="*")
    with pytest.raises(ValueError):
        mint_token(SECRET, role="teacher", lesson="l1", ttl=0)
