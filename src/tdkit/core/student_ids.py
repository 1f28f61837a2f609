"""Student ids as instructors write them: Moodle's « Participant NNNN » read as NNNN, said aloud;
an id that matches no student answered with the ids it could have meant."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection

MOODLE_IDENTIFIER = re.compile(r"\s*participant\s+(\d+)\s*", re.IGNORECASE)


def moodle_number(text: str) -> str | None:
    """'Participant 201003' (the worksheet's Identifier) -> '201003'; None for any other text."""
    match = MOODLE_IDENTIFIER.fullmatch(text)
    return str(int(match[1])) if match else None


def spelled_as_moodle(text: str, where: str) -> tuple[str, str | None]:
    """(the id, a note saying how it was read when it was Moodle's « Participant NNNN »)."""
    number = moodle_number(text)
    if number is None:
        return text.strip(), None
    return number, f"{where}: {text.strip()!r} read as student {number} (Moodle's identifier)"


def could_mean(student_id: str, known: Collection[str]) -> str:
    """'did you mean 201003?' from the closest known ids, or how many students are known."""
    close = difflib.get_close_matches(student_id, sorted(known), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(close)}?"
    if not known:
        return "no student is known yet (collect the submissions and the grading worksheet first)"
    sample = ", ".join(sorted(known)[:5])
    return f"the {len(known)} known students are {sample}{', ...' if len(known) > 5 else ''}"
