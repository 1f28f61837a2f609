"""Files: written so that readers never see them half-written, and digested by content."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from tdkit.core.errors import TdkitError


def write_atomically(target: Path, data: bytes | str) -> None:
    """Write beside ``target``, flush to disk, then rename: readers see the old file or the new one.

    Raises ``OSError``; no temporary file is left behind.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def require_writable(folder: Path, command: str) -> None:
    """Prove a file can be written in ``folder``, or in its nearest existing parent when it does not
    exist yet (nothing is created); as root, permission bits prove nothing. Else a TdkitError,
    raised before any work is done."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise TdkitError(
            f"Cannot write in {folder} ({error.strerror or error}): fix its permissions (or free disk "
            f"space), then run '{command}' again. Nothing was changed."
        ) from None


SKIPPED_NAMES = {
    "__pycache__",
    ".pytest_cache",
    ".ipynb_checkpoints",
}  # written by running, not authored


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: Path) -> str:
    """Names and bytes of every file under ``root`` (caches left out); a file alone counts too."""
    digest = hashlib.sha256()
    if root.is_file():
        return sha256_hex(root.read_bytes())
    for path in sorted(root.rglob("*")):
        if path.is_file() and not SKIPPED_NAMES & set(path.relative_to(root).parts):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(sha256_hex(path.read_bytes()).encode())
    return digest.hexdigest()
