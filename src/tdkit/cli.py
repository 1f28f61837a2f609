"""The ``tdkit`` command: one thin command per verb over a typed function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tdkit.course import find_course
from tdkit.errors import TdkitError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Print a TdkitError's message (which names the fix) and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TdkitError as error:
            click.echo(f"tdkit: {error}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group()
def main() -> None:
    """Release, grade and give feedback on the TD "CNN pour la classification d'images"."""


@main.command()
@click.option("--no-verify", is_flag=True, help="Skip running the solution notebook before releasing.")
@reports_errors
def release(no_verify: bool) -> None:
    """Check the solution, generate release/td_cnn/td_cnn.ipynb and prove it leaks nothing."""
    from tdkit.release import release as run_release

    result = run_release(find_course(), verify=not no_verify)
    if result.verified:
        click.echo(f"solution notebook: every visible and hidden test passed ({result.verify_seconds:.1f} s)")
    click.echo(f"pair: {result.pair_path}")
    click.echo(f"release: {result.release_path} ({'updated' if result.changed else 'unchanged'}; no leak)")


@main.command()
@click.argument("archive", type=click.Path())
@click.option("--force", is_flag=True, help="Replace submissions already collected whose content differs.")
@reports_errors
def collect(archive: str, force: bool) -> None:
    """Copy each student's notebook from an LMS export zip into submitted/<id>/td_cnn/td_cnn.ipynb."""
    from pathlib import Path

    from tdkit.collect import collect as run_collect

    report = run_collect(find_course(), Path(archive), force=force)
    for line in report.lines():
        click.echo(line)
    click.echo(report.summary())
