"""Errors a user can act on. The CLI prints them as plain lines (never a traceback), exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class AutostageError(Exception):
    """Base of every error caused by user input or an installed plugin."""


class PluginError(AutostageError):
    """An installed plugin cannot be loaded or used; the message names it."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a study file: where (a TOML path) and what would work."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class StudyError(AutostageError):
    """Every problem found in a study file, reported at once."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{self.source}: {p}" for p in self.problems)


def first_line(error: BaseException | str) -> str:
    """An error's first line, for a one-line message (its class name when it says nothing)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else "no details"
    return text.splitlines()[0]


def causes(error: BaseException | None, most: int = 20) -> Iterator[BaseException]:
    """`error` and the errors it came from (its cause, else its context), at most `most`."""
    while error is not None and most > 0:
        yield error
        error, most = error.__cause__ or error.__context__, most - 1
