"""Practice and tests: the messages of ``feature.py``, nested bodies (questions, tallies) typed.

The wire limits live here (lengths, counts, ranges, the question format's shape: a
question's fields by its ``type``, unknown fields refused); what needs the question or the
set to judge (an option index in range, distinct ids, a tally counting somebody) stays in
``questions.py`` / ``scoring.py``, which give the feature's own codes.
"""

from typing import Annotated, Any, ClassVar, Literal

from signaling.messages.base import (
    UNSET,
    Body,
    ClientMessage,
    ErrorCode,
    Id,
    Int,
    Meta,
    NonNegInt,
    Role,
    ServerMessage,
    Str,
    Timestamp,
    UnsetType,
    WelcomeFields,
)

from . import questions as q
from .scoring import MAX_TALLY_PER_OPTION

T, C, S = Role.TEACHER, Role.CLASSROOM, Role.STUDENT
MIN_DURATION, MAX_DURATION = 2, 4 * 3600
MAX_VALUE_TEXT = 1000
"""A typed answer on the wire; a fill-in answer is judged at 200 (answer_too_long)."""

QuestionId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Duration = Annotated[float, Meta(ge=MIN_DURATION, le=MAX_DURATION,
                                 description="seconds the round stays open")]
Title = Str[q.MAX_TITLE]
Points = Annotated[float, Meta(gt=0, le=q.MAX_POINTS)]
Options = Annotated[list[Annotated[str, Meta(min_length=1, max_length=q.MAX_OPTION)]],
                    Meta(min_length=q.MIN_OPTIONS, max_length=q.MAX_OPTIONS)]
Index = Annotated[int, Meta(ge=0, le=q.MAX_OPTIONS - 1)]
Mode = Literal["practice", "test"]


# --- a question (push-question's inline body; the set format of questions.py) -------------
class _Question(Body, tag_field="type", forbid_unknown_fields=True):
    id: QuestionId | UnsetType = UNSET
    """Default: a new id."""
    text: Annotated[str, Meta(min_length=1, max_length=q.MAX_TEXT)]
    points: Points | UnsetType = UNSET
    """Default 1."""
    explanation: Str[q.MAX_EXPLANATION] | UnsetType = UNSET
    image: Str[q.MAX_IMAGE] | UnsetType = UNSET
    """A `data:image/...` URI or a same-origin path."""


class SingleQuestion(_Question, tag="single"):
    options: Options
    answer: Index


class MultipleQuestion(_Question, tag="multiple"):
    options: Options
    answer: Annotated[list[Index], Meta(min_length=1, max_length=q.MAX_OPTIONS)]


class TrueFalseQuestion(_Question, tag="truefalse"):
    answer: bool


class FillQuestion(_Question, tag="fill"):
    answer: Str[q.MAX_ANSWER_TEXT] | Annotated[
        list[Str[q.MAX_ANSWER_TEXT]], Meta(min_length=1, max_length=q.MAX_ACCEPTED)]
    """The accepted answer(s)."""
    case_sensitive: bool | UnsetType = UNSET


class NumericQuestion(_Question, tag="numeric"):
    answer: Int | float
    tolerance: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    unit: Str[32] | UnsetType = UNSET


Question = SingleQuestion | MultipleQuestion | TrueFalseQuestion | FillQuestion \
    | NumericQuestion


# --- client -> server ------------------------------------------------------------------------
class PushQuestion(ClientMessage, tag="push-question"):
    """Open a practice question: one of the set (`question_id`) or a new one (`question`,
    added to the set); a round still open is closed (`replaced`)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`quiz-question` (broadcast)"
    field_errors: ClassVar = {"question": ErrorCode.QUESTION_INVALID}
    question_id: Id | None = None
    question: Question | None = None
    duration: Duration | None = None
    """Default: open until closed."""
    title: Title | None = None


class OpenTest(ClientMessage, tag="open-test"):
    """Open a timed test of several questions of the set (default: all of them)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`quiz-test` (broadcast)"
    question_ids: Annotated[list[Id], Meta(max_length=q.MAX_QUESTIONS)] | None = None
    duration: Duration
    title: Title | None = None


class CloseRound(ClientMessage, tag="close-round"):
    """Close a round (default: the current one); answers after it: `question_closed`."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`quiz-closed` (broadcast); already closed: `error question_closed`"
    round_id: Id | None = None


class Reveal(ClientMessage, tag="reveal"):
    """Close (if open) and reveal a round's answer key and explanations."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`quiz-reveal` (broadcast)"
    round_id: Id | None = None


TallyKey = Annotated[str, Meta(pattern=r"^[0-9]{1,2}$", description="an option index")]
TallyCount = Annotated[int, Meta(ge=0, le=MAX_TALLY_PER_OPTION)]


class QuizAnswer(ClientMessage, tag="quiz-answer"):
    """An answer: `value` (a pupil, or a classroom's one answer) or `tally` (a classroom:
    how many of its pupils chose each option; single choice and true/false)."""

    roles: ClassVar = frozenset({C, S})
    reply: ClassVar = "`quiz-ack` once stored (a resend of the same `answer_id`: " \
                      "`duplicate: true`)"
    field_errors: ClassVar = {"tally": ErrorCode.ANSWER_INVALID}
    answer_id: Id
    """8-64 letters, digits, `-`, `_`, chosen by the client: resending it is safe."""
    round_id: Id
    question_id: Id
    value: Int | float | Str[MAX_VALUE_TEXT] | Annotated[
        list[Int], Meta(max_length=q.MAX_OPTIONS)] | None = None
    """An option index, a list of them (multiple), a text, or a number (or its text)."""
    tally: Annotated[dict[TallyKey, TallyCount], Meta(max_length=q.MAX_OPTIONS)] | None \
        = None
    classroom: Str[128] | None = None
    """The classroom it answers for: only its own."""


class QuizState(ClientMessage, tag="quiz-state"):
    """Ask for the current round (and the tally, or the sender's own answers)."""

    roles: ClassVar = frozenset({T, C, S})
    reply: ClassVar = "`quiz-state`"


# --- bodies the server sends -----------------------------------------------------------------
class PublicQuestion(Body):
    """A question as pages see it: no answer key until the reveal."""

    id: QuestionId
    type: Literal["single", "multiple", "truefalse", "fill", "numeric"]
    text: str
    points: float
    option_count: NonNegInt
    options: list[str] | UnsetType = UNSET
    image: str | UnsetType = UNSET
    unit: str | UnsetType = UNSET
    answer: Any = UNSET
    """After the reveal."""
    explanation: str | UnsetType = UNSET
    tolerance: float | UnsetType = UNSET
    case_sensitive: bool | UnsetType = UNSET


class PublicRound(Body):
    round_id: Id
    mode: Mode
    title: str
    questions: list[PublicQuestion]
    opened_at: Timestamp
    closes_at: Timestamp | None
    closed_at: Timestamp | None
    revealed_at: Timestamp | None
    state: Literal["open", "closed"]


class _AnswerFields(Body):
    answer_id: Id
    round_id: Id
    question_id: Id
    received_at: Timestamp
    value: Any = UNSET
    tally: dict[str, NonNegInt] | UnsetType = UNSET
    correct: NonNegInt | UnsetType = UNSET
    """After the reveal: answers (or tallied pupils) judged right."""
    judged: NonNegInt | UnsetType = UNSET
    score: float | UnsetType = UNSET


class OwnAnswer(_AnswerFields):
    """One of the sender's own answers (`quiz-state`)."""


class NotAnswered(Body):
    id: str
    name: str
    school: str | None


class ClassroomAnswer(Body):
    id: str
    name: str
    school: str | None
    value: Any
    tally: dict[str, NonNegInt] | None
    correct: NonNegInt
    judged: NonNegInt
    received_at: Timestamp


class QuestionTally(Body):
    responses: NonNegInt
    students: NonNegInt
    classrooms: NonNegInt
    judged: NonNegInt
    correct: NonNegInt
    option_counts: list[NonNegInt] | None
    by_classroom: list[ClassroomAnswer]
    not_answered: list[NotAnswered]


class TallyBody(Body):
    round_id: Id
    version: NonNegInt
    answers: NonNegInt
    questions: dict[str, QuestionTally]
    classrooms_online: NonNegInt


# --- server -> client ------------------------------------------------------------------------
class QuizAck(_AnswerFields, ServerMessage, tag="quiz-ack"):
    """The answer is stored (or was already: `duplicate`)."""

    sent_to: ClassVar = "the sender of the answer"
    duplicate: bool


class QuizQuestion(ServerMessage, tag="quiz-question"):
    """A practice question opened."""

    sent_to: ClassVar = "every socket of the lesson"
    round: PublicRound
    server_time: Timestamp
    at: Timestamp


class QuizTest(ServerMessage, tag="quiz-test"):
    """A timed test opened (`round.closes_at`)."""

    sent_to: ClassVar = "every socket of the lesson"
    round: PublicRound
    server_time: Timestamp
    at: Timestamp


class QuizClosed(ServerMessage, tag="quiz-closed"):
    """A round closed."""

    sent_to: ClassVar = "every socket of the lesson"
    round_id: Id
    mode: Mode
    reason: Literal["teacher", "time", "replaced", "reveal"]
    closed_at: Timestamp
    at: Timestamp
    server_time: Timestamp


class QuizReveal(ServerMessage, tag="quiz-reveal"):
    """A round's answer key and explanations."""

    sent_to: ClassVar = "every socket of the lesson"
    round_id: Id
    mode: Mode
    questions: list[PublicQuestion]
    correct_options: dict[str, Index | None]
    """Per question id: the right option (single choice, true/false), else null."""
    at: Timestamp
    server_time: Timestamp


class QuizTally(TallyBody, ServerMessage, tag="quiz-tally"):
    """The teacher's live view: per option, per classroom, who has not answered."""

    sent_to: ClassVar = "the lesson's teachers, when the answers or classrooms online change"


class QuizStateBody(Body):
    """The current round, with the tally (teacher) or the sender's own answers."""

    round: PublicRound | None
    server_time: Timestamp
    time_left: float | None
    tally: TallyBody | None | UnsetType = UNSET
    """Teacher."""
    own_answers: list[OwnAnswer] | UnsetType = UNSET
    """Classroom, student."""


class QuizStateReply(QuizStateBody, ServerMessage, tag="quiz-state"):
    """The current round, with the tally (teacher) or the sender's own answers."""

    sent_to: ClassVar = "the sender of `quiz-state`"


class QuizWelcome(WelcomeFields):
    quiz: QuizStateBody | None = None
    """The current round and the sender's tally or own answers (null: store down)."""


CLIENT = (PushQuestion, OpenTest, CloseRound, Reveal, QuizAnswer, QuizState)
SERVER = (QuizAck, QuizQuestion, QuizTest, QuizClosed, QuizReveal, QuizTally, QuizStateReply,
          QuizWelcome)
MESSAGES = CLIENT + SERVER
