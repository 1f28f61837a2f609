"""One database transaction around several of nbgrader's Gradebook calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from nbgrader.api import Gradebook


@contextlib.contextmanager
def one_transaction(gb: Gradebook) -> Iterator[None]:
    """Every write of the block in one database transaction: all of it, or nothing.

    nbgrader's Gradebook commits after each of its calls; here its commits only flush, and the
    block commits once at the end (a crash or a kill before that leaves the student as they were).
    """
    session = gb.db
    commit = session.commit
    session.commit = session.flush
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    else:
        commit()
    finally:
        del session.commit
