"""Does a run that stopped early tell the student what stopped it, without noise they did not cause?"""

from __future__ import annotations

import signal

from tdkit.core.config import Limits
from tdkit.trusted.grade import stopped_message

KERNEL_WARNING = (
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication "
    "(including code and outputs) is sent in plain text and is susceptible to eavesdropping."
)
PROGRESS = "Creating parquet from Arrow format: 100%|██████████| 1/1 [00:00<00:00, 95.3ba/s]"


def test_a_killed_run_names_the_signal_and_the_memory_limit() -> None:
    """Is code 137 (SIGKILL through the sandbox) said as a kill, with the memory limit, and no kernel warning?"""
    message = stopped_message(137, f"{KERNEL_WARNING}\n{PROGRESS}\n", Limits(memory_mb=2048))
    assert message.startswith("L'exécution a été arrêtée par le signal SIGKILL")
    assert "2048 Mo" in message
    assert "IPKernelApp" not in message and "parquet" not in message and "\n" not in message


def test_a_negative_return_code_is_a_signal_too() -> None:
    """Does subprocess's -N (killed by signal N) read as that signal, here the CPU limit?"""
    message = stopped_message(-int(signal.SIGXCPU), "", Limits(cpu_seconds=90))
    assert "SIGXCPU" in message and "90 s de CPU" in message


def test_an_exit_code_keeps_the_last_lines_the_run_wrote() -> None:
    """Does a plain exit code come with what the run said last, past the noise?"""
    output = f"{KERNEL_WARNING}\nTraceback (most recent call last):\nMemoryError: cannot allocate\n"
    message = stopped_message(1, output, Limits())
    assert message.splitlines() == [
        "L'exécution s'est arrêtée avec le code de sortie 1.",
        "Traceback (most recent call last):",
        "MemoryError: cannot allocate",
    ]
