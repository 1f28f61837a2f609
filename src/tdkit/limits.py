"""``python -m tdkit.limits AS_MB CPU_S FSIZE_MB -- COMMAND...``: set resource limits, then exec.

A separate launcher rather than ``preexec_fn``, which is unsafe while other threads run (the
grader runs several submissions at once).
"""

from __future__ import annotations

import os
import resource
import sys

MB = 1024 * 1024


def apply(memory_mb: int, cpu_seconds: int, max_file_mb: int) -> None:
    for limit, value in (
        (resource.RLIMIT_AS, memory_mb * MB),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, max_file_mb * MB),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    memory_mb, cpu_seconds, max_file_mb = (int(v) for v in argv[:separator])
    command = argv[separator + 1 :]
    apply(memory_mb, cpu_seconds, max_file_mb)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
