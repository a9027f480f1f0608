"""Metric names in PromQL expressions, and the names a running server exports (for the
ops-pack tests: a dashboard or rule that names a series nobody exports shows nothing)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = [PROMETHEUS / "rules" / "recording_rules.yml",
              PROMETHEUS / "rules" / "alert_rules.yml"]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))

PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
"""Series Prometheus makes itself."""

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, ranges, grouping clauses,
    Grafana $variables and function names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)      # strings
    text = re.sub(r"\{[^}]*\}", "", text)                 # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                # ranges, subqueries
    text = _CLAUSE.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "1", text)              # Grafana variables
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def rule_exprs() -> Iterator[tuple[str, str]]:
    """(record or alert name, expr) of the shipped rule files (a small reader of their
    layout: ``- record:``/``- alert:`` then ``expr:`` inline or as a ``|`` block)."""
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        name = ""
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith(("- record:", "- alert:")):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("expr:"):
                value = line[5:].strip()
                if value == "|":
                    indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
                    block = []
                    while i + 1 < len(lines) and (not lines[i + 1].strip() or
                                                  len(lines[i + 1]) - len(lines[i + 1].lstrip())
                                                  >= indent):
                        i += 1
                        block.append(lines[i].strip())
                    value = " ".join(block)
                yield name, value
            i += 1


def recorded_names() -> set[str]:
    names = set()
    for path in RULE_FILES:
        names |= set(re.findall(r"^\s*- record:\s*(\S+)", path.read_text(), re.M))
    return names


def dashboard_exprs(path: Path) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of a dashboard, templating queries included (label_values(m, l)
    is given as its metric selector)."""
    board = json.loads(path.read_text())

    def panels(items: list) -> Iterator[dict]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(board.get("panels", [])):
        for target in p.get("targets", []):
            yield p.get("title", "?"), target["expr"]
    for var in board.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
        if match:
            yield f"variable {var['name']}", match.group(1)
        elif query:
            yield f"variable {var['name']}", query


def exported_names(exposition: str) -> set[str]:
    """Series names of a /metrics text, with every sample name of each declared family
    (a labelled family with no child yet has only its # TYPE line)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {f"{name}_sum", f"{name}_count"}
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def documented_names() -> set[str]:
    """Metric names written in the docs (docs/*.md except the ops pack's own page), for
    series a test server has not created yet."""
    names = set()
    for doc in (REPO / "docs").glob("*.md"):
        if doc.name == "operations.md":
            continue
        names |= set(re.findall(r"\b(classroom_[a-z0-9_]+)", doc.read_text()))
    expanded = set(names)
    for name in names:  # a documented histogram's series
        expanded |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return expanded
