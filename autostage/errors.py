"""Errors a user can act on. The CLI prints them as plain lines (never a traceback), exit 2."""

from __future__ import annotations

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
