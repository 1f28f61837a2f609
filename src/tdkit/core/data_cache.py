"""Where the grading data lives: one folder per content, named by a digest of it, written once.

Light on purpose: a run that finds its folder (every ``tdkit grade`` after the first) names it
without importing ``datasets``; only a missing folder loads ``tdkit.core.data`` to write it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tdkit.core.config import DATA_CACHE_ENV, SYNTHETIC

GENERATOR = Path(__file__).with_name("data.py")  # the synthetic images' code


def data_cache() -> Path:
    """``TDKIT_DATA_CACHE``, else ``$XDG_CACHE_HOME/tdkit/data`` (``~/.cache/tdkit/data``)."""
    if os.environ.get(DATA_CACHE_ENV):
        return Path(os.environ[DATA_CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "tdkit" / "data"


def grading_folder(
    source: str | os.PathLike[str] = SYNTHETIC,
    *,
    n_train: int,
    n_test: int,
    seed: int = 0,
    cache: Path | None = None,
) -> Path:
    """A folder in the hub's layout with ``n_train`` + ``n_test`` images, written on first use.

    ``source`` is ``"synthetic"`` (images of ``tdkit.core.data.synthetic_cifar10``, deterministic in
    ``seed``) or a local copy in the hub's layout, of which the first rows of each split are
    taken. The folder's name is a digest of what it holds, so a change of source, size or
    generator makes a new one.
    """
    digest = hashlib.sha256(f"{n_train} {n_test} {seed}".encode())
    if source == SYNTHETIC:
        digest.update(GENERATOR.read_bytes())  # the generator's code: a new one, a new folder
        name = "synthetic"
    else:
        origin = Path(source).expanduser().resolve()
        digest.update(str(origin).encode())
        for path in sorted(origin.rglob("*.parquet")):  # a replaced copy gives a new slice
            digest.update(f"{path} {path.stat().st_size} {path.stat().st_mtime_ns}".encode())
        name = "slice"
    folder = (cache or data_cache()) / f"cifar10-{name}-{digest.hexdigest()[:16]}"
    if folder.is_dir():
        return folder
    from tdkit.core.data import write_grading_folder  # datasets and pyarrow: only to write a folder

    return write_grading_folder(source, folder, n_train, n_test, seed)
