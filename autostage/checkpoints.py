"""Stage-boundary checkpoints, whatever the trainer: a manifest of every file's SHA-256,
written last, seals a checkpoint. One whose files do not match its manifest (a write cut
short, a file edited or missing) is torn: it is refused, and a retry resumes from the newest
intact one before it.

Pure Python: the search layer seals what the trainer saved (`TrainerRun.save`) beside the
trial loop's own state (LOOP), and verifies before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError

MANIFEST = "manifest.sha256.json"
LOOP = "loop.json"  # the trial loop's state at the boundary (trial.LoopState)


class TornCheckpoint(AutostageError):
    """A checkpoint's files do not match its manifest."""


def seal(directory: Path) -> None:
    """Write the manifest of every file under `directory` (last: its presence means the rest
    was complete when it was written)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    digests = {p.relative_to(directory).as_posix(): _digest(p) for p in files}
    (directory / MANIFEST).write_text(json.dumps(digests, indent=0))


def verify(directory: Path) -> None:
    """Raise TornCheckpoint unless every file of the manifest is there and unchanged. (Files
    added later are not read by anyone: a trainer loads what it saved, and that is sealed.)"""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        raise TornCheckpoint(f"checkpoint {directory} has no readable manifest "
                             f"({MANIFEST}): it was cut short") from None
    for name, digest in manifest.items():
        path = directory / name
        if not path.is_file() or _digest(path) != digest:
            raise TornCheckpoint(f"checkpoint {directory}: {name} does not match its manifest")


def newest_intact(latest: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint among `latest` and the checkpoints before it in its
    folder (Ray's checkpoint_000000, checkpoint_000001, ...), and why each newer one was
    refused."""
    earlier = sorted((p for p in latest.parent.glob("checkpoint_*")
                      if p.is_dir() and p.name < latest.name), reverse=True)
    refused = []
    for directory in [latest, *earlier]:
        try:
            verify(directory)
        except TornCheckpoint as e:
            refused.append(str(e))
            continue
        return directory, refused
    return None, refused


def restore(trainer: Any, latest: Path) -> tuple[Any, list[str]]:
    """Load the newest intact checkpoint (`latest`, or one before it when `latest` is torn)
    into `trainer`. Returns its trial-loop state (`trial.LoopState`; None: none is intact,
    start over) and why each newer checkpoint was refused."""
    from autostage.trial import LoopState

    directory, refused = newest_intact(latest)
    if directory is None:
        return None, refused
    trainer.load(str(directory))
    return LoopState.from_json(json.loads((directory / LOOP).read_text())), refused


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
