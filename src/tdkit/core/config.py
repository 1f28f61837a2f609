"""tdkit's settings in one place: the run's limits and the environment variables.

Imported on both sides of the sandbox (the runner included): it stays light, standard library and
traitlets only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from traitlets import Int
from traitlets.config import Config, Configurable

from tdkit.core.errors import TdkitError
from tdkit.core.settings import configured

# Environment variables tdkit reads or sets.
SANDBOX_ENV = (
    "TDKIT_SANDBOX"  # set in every graded kernel: the notebook's check() does nothing there
)
KILL_ALL_ENV = "TDKIT_KILL_ALL"  # "1": every process the run can signal is its own (runner.py)
GRADER_TESTS_ENV = "TDKIT_GRADER_TESTS"  # where check() finds grader_tests/ outside the sandbox
ENVIRONMENT_ENV = "TDKIT_ENVIRONMENT"  # the kernel's environment: CourseEnvironment.kernel_json()
DATA_CACHE_ENV = (
    "TDKIT_DATA_CACHE"  # grading folders and the oracle's kept values (default ~/.cache/tdkit/data)
)
DB_URL_ENV = "TDKIT_DB_URL"  # the gradebook URL, password included, from the environment

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Limits of one submission's untrusted run (``c.TdkitLimits`` in nbgrader_config.py)."""

    cell_timeout: int = 120  # seconds per notebook cell
    run_timeout: int = 300  # seconds for the whole run, kernel start and probe included
    memory_mb: int = 6144  # address space of each process of the run
    cpu_seconds: int = 600  # CPU time of each process of the run
    max_file_mb: int = 256  # largest file the run may write
    max_output_mb: int = (
        8  # outputs kept in the executed notebook (the rest is dropped, with a note)
    )
    max_processes: int = 256  # processes and threads of the run (enforced under a dedicated uid)
    max_notebook_mb: int = 32  # largest submitted notebook file accepted
    max_cells: int = 1000  # most cells a submitted notebook may have

    @property
    def max_notebook_bytes(self) -> int:
        """Largest submitted notebook, at intake and at grading alike."""
        return self.max_notebook_mb * MB

    @property
    def max_executed_bytes(self) -> int:
        """Largest executed notebook brought back: the submission plus the outputs it may keep."""
        return (self.max_notebook_mb + self.max_output_mb) * MB


class TdkitLimits(Configurable):
    """``c.TdkitLimits.<name>`` in nbgrader_config.py: limits of each submission's untrusted run."""

    cell_timeout = Int(Limits.cell_timeout, help="Seconds one notebook cell may run.").tag(
        config=True
    )
    run_timeout = Int(
        Limits.run_timeout,
        help="Seconds the whole run may take: kernel starts, every cell, the probe.",
    ).tag(config=True)
    memory_mb = Int(Limits.memory_mb, help="Address space (MB) of each process of the run.").tag(
        config=True
    )
    cpu_seconds = Int(Limits.cpu_seconds, help="CPU seconds of each process of the run.").tag(
        config=True
    )
    max_file_mb = Int(Limits.max_file_mb, help="Largest file (MB) the run may write.").tag(
        config=True
    )
    max_output_mb = Int(
        Limits.max_output_mb,
        help="Cell outputs (MB) kept in the executed notebook; the rest is dropped.",
    ).tag(config=True)
    max_processes = Int(
        Limits.max_processes, help="Processes and threads of one run (a fork bomb stops there)."
    ).tag(config=True)
    max_notebook_mb = Int(
        Limits.max_notebook_mb, help="Largest submitted notebook (MB) accepted."
    ).tag(config=True)
    max_cells = Int(Limits.max_cells, help="Most cells a submitted notebook may have.").tag(
        config=True
    )


def limits_from_config(config: Config) -> Limits:
    """The ``TdkitLimits`` section of a course's config; an unknown or non-positive value is an error."""
    section = config.get("TdkitLimits", {})
    valid = sorted(f.name for f in fields(Limits))
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise TdkitError(
            f"nbgrader_config.py: unknown c.TdkitLimits.{', c.TdkitLimits.'.join(unknown)}; "
            f"valid keys: {', '.join(valid)}."
        )
    values: dict[str, Any] = {}
    section = configured(TdkitLimits, config)
    for name in valid:
        value = getattr(section, name)
        if value <= 0:
            raise TdkitError(
                f"nbgrader_config.py: c.TdkitLimits.{name} must be a positive integer, not {value}."
            )
        values[name] = value
    return Limits(**values)
