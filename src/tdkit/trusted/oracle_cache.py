"""The oracle's slow values, kept across grading processes.

Training the reference on the grader's inputs builds torch's first optimizer, whose import of
``torch._dynamo`` costs 2.5 s of CPU in every grading process (each ``tdkit grade``, each Dask
worker). The arrays are kept in the grading data cache under a digest of everything they
depend on: the course's reference and hidden checks, tdkit's code, torch, numpy and datasets.
Only the grader writes there; no run sees the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

from tdkit.core.data_cache import data_cache
from tdkit.core.files import tree_digest, write_atomically
from tdkit.trusted.distributed import code_digest

LIBRARIES = ("torch", "numpy", "datasets")


def oracle_file(name: str, sources: Sequence[Path]) -> Path:
    """Where ``name``'s arrays are kept for these ``sources`` (files or folders)."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(tree_digest(source).encode())
    digest.update(code_digest().encode())
    digest.update(" ".join(version(library) for library in LIBRARIES).encode())
    return data_cache() / "oracle" / f"{name}-{digest.hexdigest()[:16]}.npz"


def remembered(
    name: str, sources: Sequence[Path], compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """``compute()``'s arrays, computed once for these ``sources`` and kept on disk."""
    path = oracle_file(name, sources)
    with (
        contextlib.suppress(OSError, ValueError, EOFError, zipfile.BadZipFile),
        np.load(path, allow_pickle=False) as stored,
    ):
        return {key: stored[key] for key in stored.files}
    values = compute()
    buffer = io.BytesIO()
    np.savez(buffer, **values)  # type: ignore[arg-type]
    with contextlib.suppress(OSError):  # a cache that cannot be written: computed again next time
        write_atomically(path, buffer.getvalue())
    return values
