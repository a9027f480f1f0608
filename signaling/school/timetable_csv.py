"""The timetable as schools keep it in spreadsheets: CSV in, CSV out.

Header row with Chinese or English column names (either per column):

    编号/id  学期/term  星期/weekday  日期/date  开始/starts  结束/ends  学科/subject
    年级/grade  主讲教师/teacher  主讲课堂/main_classroom  接收课堂/receiving  集群/cluster
    标题/title

``星期`` is 一..日 (also 周一, 星期一, 天), 1..7 or Mon..Sun; a row has a weekday (weekly)
or a date (one-off). ``接收课堂`` lists classrooms separated by ``;``, ``；`` or ``、``.
Term, teacher, classroom and cluster cells take an id or a unique name. Without an ``id``
column a row's slot id is derived from the term, main classroom, day and start, so the
same file imported twice updates rather than duplicates. The bytes may be UTF-8 (with or
without BOM), UTF-16 with BOM, or GBK/GB18030 (Excel's "CSV" on a Chinese Windows);
commas or tabs. Parsing never touches the database: :func:`parse` gives rows and per-row
errors, the API checks them all (references, conflicts) and applies them in one go.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from ..errors import ClassroomError, ErrorCode

COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("编号", "id", "slot", "slot_id"),
    "term": ("学期", "term", "term_id"),
    "weekday": ("星期", "weekday", "day"),
    "date": ("日期", "date"),
    "starts": ("开始", "开始时间", "starts", "start"),
    "ends": ("结束", "结束时间", "ends", "end"),
    "subject": ("学科", "科目", "subject"),
    "grade": ("年级", "grade"),
    "teacher": ("主讲教师", "教师", "teacher", "teacher_id"),
    "main_classroom": ("主讲课堂", "main_classroom", "main_classroom_id", "main"),
    "receiving": ("接收课堂", "receiving", "receiving_classroom_ids"),
    "cluster": ("集群", "cluster", "cluster_id"),
    "title": ("标题", "title"),
}
REQUIRED = ("term", "starts", "ends", "subject", "teacher", "main_classroom")
EXPORT_HEADER = ("编号", "学期", "星期", "日期", "开始", "结束", "学科", "年级", "主讲教师",
                 "主讲课堂", "接收课堂", "集群", "标题")
WEEKDAYS_ZH = "一二三四五六日"
WEEKDAY_NAMES = {**{c: i for i, c in enumerate(WEEKDAYS_ZH)}, "天": 6,
                 **{str(i + 1): i for i in range(7)},
                 **{n: i for i, n in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
                 **{n: i for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday",
                                                "friday", "saturday", "sunday"))}}
MAX_ROWS = 20_000


@dataclass
class RowError:
    row: int  # 1-based line of the file (the header is row 1)
    column: str
    message: str
    other: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "column": self.column, "message": self.message}
        if self.other is not None:
            out["other"] = self.other
        return out


class ImportRejected(ClassroomError):
    """The file has errors: every one of them, per row; nothing was written."""

    def __init__(self, errors: list[RowError]) -> None:
        only_conflicts = bool(errors) and all(e.other is not None for e in errors)
        code = ErrorCode.CONFLICT if only_conflicts else ErrorCode.BAD_MESSAGE
        first = errors[0]
        super().__init__(code, f"{len(errors)} error(s); nothing imported; first: row "
                               f"{first.row}, {first.column}: {first.message}")
        self.errors = errors

    def to_json(self) -> dict[str, Any]:  # type: ignore[override]
        return {**super().to_json(), "rows": [e.to_json() for e in self.errors[:500]]}


def decode(body: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with BOM, else GB18030 (a superset of GBK)."""
    if body.startswith(b"\xef\xbb\xbf"):
        return body[3:].decode("utf-8", errors="strict")
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030")
    except UnicodeDecodeError:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "the file is neither UTF-8 nor GBK/GB18030 "
                                                    "text (save it as CSV UTF-8)") from None


def weekday_of(text: str) -> int:
    t = text.strip().lower()
    for prefix in ("星期", "周", "礼拜"):
        if t.startswith(prefix):
            t = t[len(prefix):]
    if t in WEEKDAY_NAMES:
        return WEEKDAY_NAMES[t]
    raise ValueError(f"expected 一..日, 1..7 or Mon..Sun, got {text!r}")


def _header_map(header: list[str]) -> tuple[dict[str, int], list[str]]:
    names = {alias.lower(): key for key, aliases in COLUMNS.items() for alias in aliases}
    out: dict[str, int] = {}
    unknown = []
    for i, cell in enumerate(header):
        key = names.get(cell.strip().lower())
        if key is None:
            if cell.strip():
                unknown.append(cell.strip())
            continue
        out.setdefault(key, i)
    return out, unknown


@dataclass
class Row:
    line: int
    cells: dict[str, str]


def parse(body: bytes) -> tuple[list[Row], list[RowError]]:
    """Rows of the file (cells by column key) and the file-level/header errors."""
    text = decode(body)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"not a CSV file: {exc}") from None
    if not lines:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "empty file: a header row is needed")
    columns, _unknown = _header_map(lines[0])
    missing = [k for k in REQUIRED if k not in columns]
    errors = [RowError(1, COLUMNS[k][0], f"column {COLUMNS[k][0]}/{COLUMNS[k][1]} missing")
              for k in missing]
    if "weekday" not in columns and "date" not in columns:
        errors.append(RowError(1, "星期", "a weekday (星期) or date (日期) column is needed"))
    if errors:
        return [], errors
    if len(lines) - 1 > MAX_ROWS:
        raise ClassroomError(ErrorCode.TOO_LARGE, f"at most {MAX_ROWS} rows per file")
    rows = []
    for n, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        rows.append(Row(n, {k: (cells[i].strip() if i < len(cells) else "")
                            for k, i in columns.items()}))
    return rows, []


class Resolver:
    """Cells to ids: an id, else a unique name."""

    def __init__(self, docs: dict[str, dict[str, Any]], what: str) -> None:
        self.docs = docs
        self.what = what
        self.by_name: dict[str, list[str]] = {}
        for doc in docs.values():
            name = str(doc.get("name", "")).strip()
            if name:
                self.by_name.setdefault(name, []).append(doc["id"])

    def __call__(self, cell: str) -> str:
        if cell in self.docs:
            return cell
        ids = self.by_name.get(cell, [])
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise ValueError(f"{self.what} name {cell!r} is ambiguous ({', '.join(ids[:3])}): "
                             "use the id")
        raise ValueError(f"unknown {self.what} {cell!r}")


def derived_id(term: str, main: str, day: str, starts: str) -> str:
    digest = hashlib.sha1(f"{term}|{main}|{day}|{starts}".encode()).hexdigest()[:10]
    return f"{main[:40]}-{digest}"


def split_list(cell: str) -> list[str]:
    for sep in ("；", "、", ","):
        cell = cell.replace(sep, ";")
    return [p.strip() for p in cell.split(";") if p.strip()]


def row_to_slot(row: Row, resolve: dict[str, Resolver]) -> tuple[dict[str, Any] | None,
                                                                list[RowError]]:
    """The slot document a row describes (ids resolved, not yet checked), or its errors."""
    c = row.cells
    errors: list[RowError] = []
    out: dict[str, Any] = {}

    def field(key: str, fn: Any) -> Any:
        try:
            return fn(c.get(key, ""))
        except ValueError as exc:
            errors.append(RowError(row.line, COLUMNS[key][0], str(exc)))
            return None

    out["term_id"] = field("term", resolve["term"])
    out["teacher_id"] = field("teacher", resolve["teacher"])
    out["main_classroom_id"] = field("main_classroom", resolve["classroom"])
    out["receiving_classroom_ids"] = field(
        "receiving", lambda v: [resolve["classroom"](x) for x in split_list(v)]) or []
    out["cluster_id"] = field("cluster", lambda v: resolve["cluster"](v) if v else "")
    wd, date = c.get("weekday", ""), c.get("date", "")
    if wd and date:
        errors.append(RowError(row.line, "星期", "give a weekday (weekly) or a date "
                                                 "(one-off), not both"))
    elif not wd and not date:
        errors.append(RowError(row.line, "星期", "a weekday (星期) or a date (日期) is needed"))
    out["weekday"] = field("weekday", weekday_of) if wd else None
    out["date"] = date.replace("/", "-") if date else None
    for key in ("starts", "ends", "subject", "grade", "title"):
        out[key] = c.get(key, "")
    if errors:
        return None, errors
    day = date or f"w{out['weekday']}"
    out["id"] = c.get("id") or derived_id(out["term_id"], out["main_classroom_id"], day,
                                          out["starts"])
    return out, []


def column_of(message: str) -> str:
    """The CSV column a slot rule's message (``field: ...``) is about."""
    field_name = message.split(":", 1)[0]
    back = {"id": "编号", "term_id": "学期", "teacher_id": "主讲教师",
            "main_classroom_id": "主讲课堂", "receiving_classroom_ids": "接收课堂",
            "cluster_id": "集群", "weekday": "星期", "date": "日期", "starts": "开始",
            "ends": "结束", "subject": "学科", "grade": "年级", "title": "标题"}
    return back.get(field_name, "")


def export(slots: list[dict[str, Any]]) -> bytes:
    """The slots as a CSV Excel opens (UTF-8 with BOM, Chinese header, ids in cells)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(EXPORT_HEADER)
    for s in sorted(slots, key=lambda s: (s["term_id"], s.get("date") or "",
                                          s.get("weekday") if s.get("weekday") is not None
                                          else -1, s["starts"], s["id"])):
        wd = s.get("weekday")
        w.writerow([s["id"], s["term_id"], WEEKDAYS_ZH[wd] if wd is not None else "",
                    s.get("date") or "", s["starts"], s["ends"], s["subject"],
                    s.get("grade", ""), s["teacher_id"], s["main_classroom_id"],
                    ";".join(s.get("receiving_classroom_ids") or []), s.get("cluster_id", ""),
                    s.get("title", "")])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
