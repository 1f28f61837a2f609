"""``python -m tdkit.untrusted.rlimits AS_MB CPU_S FSIZE_MB NPROC -- COMMAND...``: set resource limits, then exec.

``python -m tdkit.untrusted.rlimits --drop UID -- COMMAND...``: become ``UID``, then exec (run inside
bubblewrap, once the sandbox's mounts are in place: the dropped user could not read a Python
installed under ``/root``).

A separate launcher rather than ``preexec_fn``, which is unsafe while other threads run (the
grader runs several submissions at once).

``UID`` (``-1``: keep the current user) is a dedicated unprivileged user id claimed for this
run only (see ``tdkit.untrusted.sandbox.claim_uid``). Linux does not enforce ``RLIMIT_NPROC`` for root,
and counts it per real user id: running each submission as its own uid is what makes the
process limit (a fork bomb) hold, and leaves the run unable to write any root-owned file.
"""

from __future__ import annotations

import os
import resource
import sys

from tdkit.core.config import MB


def apply(memory_mb: int, cpu_seconds: int, max_file_mb: int, max_processes: int = 0) -> None:
    limits = [
        (resource.RLIMIT_AS, memory_mb * MB),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, max_file_mb * MB),
        (resource.RLIMIT_CORE, 0),
    ]
    if max_processes > 0:
        limits.append((resource.RLIMIT_NPROC, max_processes))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))


def drop_to(uid: int) -> None:
    """Become ``uid`` (group ``uid``, no supplementary groups) for good."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"tdkit.untrusted.rlimits: could not drop to uid {uid}")


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    command = argv[separator + 1 :]
    if argv[0] == "--drop":
        drop_to(int(argv[1]))
    else:
        memory_mb, cpu_seconds, max_file_mb, max_processes = (int(v) for v in argv[:separator])
        apply(memory_mb, cpu_seconds, max_file_mb, max_processes)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
