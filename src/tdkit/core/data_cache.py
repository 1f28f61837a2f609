"""Where grading data lives: one folder per content, named by a digest of it, written once.

Light on purpose: a run that finds its folder (every ``tdkit grade`` after the first) names it
without importing what writes it; an assignment's profile (``grader_tests/<name>/assignment.py``)
imports its writer only when the folder is missing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tdkit.core.config import DATA_CACHE_ENV


def data_cache() -> Path:
    """``TDKIT_DATA_CACHE``, else ``$XDG_CACHE_HOME/tdkit/data`` (``~/.cache/tdkit/data``)."""
    if os.environ.get(DATA_CACHE_ENV):
        return Path(os.environ[DATA_CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "tdkit" / "data"


def cached_folder(
    name: str,
    key: str,
    files: Iterable[Path],
    write: Callable[[Path], Path],
    cache: Path | None = None,
) -> Path:
    """The folder ``<cache>/<name>-<digest>``, written by ``write(folder)`` on first use.

    The digest covers ``key`` and each file of ``files`` (its path, size and time, or its bytes
    when it is small code): a change of either makes a new folder. ``write`` writes the folder
    complete or not at all (a scratch folder beside it, renamed).
    """
    digest = hashlib.sha256(key.encode())
    for path in files:
        if path.suffix == ".py":
            digest.update(path.read_bytes())  # the writer's code: a new one, a new folder
        else:
            digest.update(f"{path} {path.stat().st_size} {path.stat().st_mtime_ns}".encode())
    folder = (cache or data_cache()) / f"{name}-{digest.hexdigest()[:16]}"
    return folder if folder.is_dir() else write(folder)
