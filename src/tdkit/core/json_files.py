"""tdkit's own JSON files read back against their schema: a damaged one is named, never guessed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tdkit.core.errors import TdkitError


class DamagedFile(TdkitError):
    """One of tdkit's own files does not match its schema (or is not JSON)."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(f"{path} is damaged: {problem}: {fix}.")
        self.path = path
        self.problem = problem


def read_checked_json(path: Path, schema: dict[str, Any], fix: str) -> Any:
    """The JSON value of ``path`` once it matches ``schema``; else a TdkitError saying where it does
    not, what was found, and ``fix`` (the command that writes the file again)."""
    import json

    import jsonschema

    try:
        value = json.loads(path.read_bytes())
    except OSError as error:
        raise TdkitError(f"Cannot read {path} ({error.strerror}): {fix}.") from None
    except ValueError as error:  # not UTF-8, not JSON
        raise DamagedFile(path, f"not JSON ({error})", fix) from None
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "the top level"
        raise DamagedFile(path, f"at {where}, {_short(problem.message)}", fix)
    return value


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
