"""The names of the known mistakes a judge explained, collected for the grader's class report.

A judge turns recognised mistakes into a hint with checks.core.explain, which notes their names here while a
`noting_mistakes()` block is open. The grader opens one around each check it judges, so that a failure carries the
names of the mistakes its message explains without each judge passing them along; in the notebook no block is open
and nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_NOTED: ContextVar[list[str] | None] = ContextVar("noted_mistakes", default=None)
"""The names noted since the innermost open noting_mistakes() began; None when none is open."""


@contextmanager
def noting_mistakes() -> Iterator[list[str]]:
    """Collect the names of the mistakes explained while the block runs.

    Returns:
        The list the names are appended to, in the order they were explained.
    """
    token = _NOTED.set([])
    try:
        yield _NOTED.get()
    finally:
        _NOTED.reset(token)


def note_mistakes(names: Iterable[str]) -> None:
    """Add the (non-empty) names to the open noting_mistakes() block; nothing happens when none is open."""
    noted = _NOTED.get()
    if noted is not None:
        noted.extend(name for name in names if name)
