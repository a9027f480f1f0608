import json

import pytest

from signaling.auth import Role
from signaling.errors import ClassroomError, ErrorCode
from signaling.protocol import MAX_MESSAGE_BYTES, check_role, parse_frame
from signaling.ratelimit import TokenBucket


def code_of(raw) -> ErrorCode:
    with pytest.raises(ClassroomError) as err:
        parse_frame(raw)
    return err.value.code


def test_valid_offer_parses_and_drops_unknown_fields():
    msg = parse_frame(json.dumps({"type": "offer", "sdp": "v=0\r\n", "purpose": "subscribe",
                                  "extra": 1}))
    assert msg.type == "offer" and msg.data == {"sdp": "v=0\r\n", "purpose": "subscribe"}


@pytest.mark.parametrize("raw,code", [
    ("{not json", ErrorCode.BAD_JSON),
    ("[1,2]", ErrorCode.BAD_JSON),
    ("{}", ErrorCode.BAD_MESSAGE),
    ('{"type": 5}', ErrorCode.BAD_MESSAGE),
    ('{"type": "teleport"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type": "hello"}', ErrorCode.BAD_MESSAGE),
    ('{"type": "hello", "token": 7}', ErrorCode.BAD_MESSAGE),
    ('{"type": "offer", "sdp": "v=0", "purpose": "steal"}', ErrorCode.BAD_MESSAGE),
    ('{"type": "ice", "purpose": "publish", "candidate": "c", "sdpMLineIndex": true}',
     ErrorCode.BAD_MESSAGE),
    (json.dumps({"type": "hello", "token": "x" * MAX_MESSAGE_BYTES}), ErrorCode.TOO_LARGE),
    (json.dumps({"type": "offer", "purpose": "publish", "sdp": "x" * 60000}),
     ErrorCode.BAD_MESSAGE),
])
def test_bad_frames_get_precise_codes(raw, code):
    assert code_of(raw) == code


def test_roles_are_checked_per_type_and_purpose():
    start = parse_frame('{"type": "start-lesson"}')
    check_role(start, Role.TEACHER)
    for role in (Role.CLASSROOM, Role.STUDENT, Role.OPS):
        with pytest.raises(ClassroomError) as err:
            check_role(start, role)
        assert err.value.code == ErrorCode.FORBIDDEN
    publish = parse_frame('{"type": "offer", "sdp": "v=0", "purpose": "publish"}')
    with pytest.raises(ClassroomError):
        check_role(publish, Role.CLASSROOM)
    check_role(parse_frame('{"type": "offer", "sdp": "v=0", "purpose": "subscribe"}'),
               Role.CLASSROOM)


def test_token_bucket_allows_burst_then_rate():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(20)) == 5
    now[0] += 0.5  # five tokens refilled
    assert sum(bucket.take() for _ in range(20)) == 5
