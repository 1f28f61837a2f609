"""``results.json`` read back against its schema (the shape ``tdkit.reports.results`` documents):
a damaged file is named with the place it breaks, never half-read."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from tdkit.core.json_files import read_checked_json
from tdkit.reports.results import AssignmentResults, CellGrade, CheckResult
from tdkit.untrusted.execute import CellError

REWRITE = (
    "run 'tdkit grade --all', which grades every submission again and writes it anew (the TAs' "
    "hand grading, overrides and comments are read again from the gradebook, where they live)"
)
_NUMBER = {"type": "number"}
_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_TEXTS = {"type": "array", "items": _TEXT}
CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["passed", "points", "max_points", "message"],
    "properties": {
        "passed": {"type": "boolean"},
        "points": _NUMBER,
        "max_points": _NUMBER,
        "message": _TEXT,
    },
    # CheckResult(**record) takes its own fields only, whichever they are
    "propertyNames": {"enum": [f.name for f in fields(CheckResult) if f.name != "check_id"]},
}
CELL_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["index", "cell_id", "ename", "evalue", "traceback"],
    "properties": {
        "index": {"type": "integer"},
        "cell_id": _TEXT,
        "ename": _TEXT,
        "evalue": _TEXT,
        "traceback": _TEXT,
    },
    "propertyNames": {"enum": [f.name for f in fields(CellError)]},  # CellError(**record) likewise
}
CELL_GRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cell", "kind", "max_points"],
    "properties": {
        "cell": _TEXT,
        "kind": {"enum": ["auto", "hand", "comment"]},
        "max_points": _NUMBER,
        "auto_points": {"type": ["number", "null"]},
        "manual_points": {"type": ["number", "null"]},
        "extra_credit": _NUMBER,
        "needs_grading": {"type": "boolean"},
        "comment": _TEXT_OR_NULL,
    },
    "propertyNames": {"enum": [f.name for f in fields(CellGrade)]},  # CellGrade(**record) likewise
}
STUDENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["checks"],
    "properties": {
        "checks": {"type": "object", "additionalProperties": CHECK_SCHEMA},
        "seconds": _NUMBER,
        "failure": _TEXT_OR_NULL,
        "errors": {"type": "array", "items": CELL_ERROR_SCHEMA},
        "figures": {"type": "object", "additionalProperties": {"type": "object"}},
        "manual": {"type": "object", "additionalProperties": _NUMBER},
        "submitted_at": _TEXT_OR_NULL,
        "seconds_late": _NUMBER,
        "late_penalty": _NUMBER,
        "group": _TEXT_OR_NULL,
        "graded_with": _TEXT_OR_NULL,
        "missing_modules": _TEXTS,
        "refused": {"type": "boolean"},
        "notice": _TEXT_OR_NULL,
        "fingerprint": {"type": "object"},
        "grader_failure": {"type": "boolean"},
        "cells": {"type": "array", "items": CELL_GRADE_SCHEMA},
        "answers": {"type": "object", "additionalProperties": _TEXT},
    },
}
RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["assignment", "students"],
    "properties": {
        "assignment": _TEXT,
        "students": {"type": "object", "additionalProperties": STUDENT_SCHEMA},
        "conflicts": _TEXTS,
        "environment": _TEXTS,
    },
}


def load_results(path: Path) -> AssignmentResults:
    """``results.json`` once it matches RESULTS_SCHEMA; else DamagedFile, whose fix is REWRITE."""
    return AssignmentResults.from_json(read_checked_json(path, RESULTS_SCHEMA, REWRITE))
