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
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
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


def verify(directory: Path, name: str | None = None) -> None:
    """Raise TornCheckpoint unless every file of the manifest is there and unchanged. (Files
    added later are not read by anyone: a trainer loads what it saved, and that is sealed.)
    `name`: the checkpoint as messages call it (a download's temporary folder is not)."""
    name = name or str(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        raise TornCheckpoint(f"checkpoint {name} has no readable manifest "
                             f"({MANIFEST}): it was cut short") from None
    for file, digest in manifest.items():
        path = directory / file
        if not path.is_file() or _digest(path) != digest:
            raise TornCheckpoint(f"checkpoint {name}: {file} does not match its manifest")


def on_disk(latest: Path) -> list[tuple[str, AbstractContextManager[Path]]]:
    """`latest` and the checkpoints before it in its folder (Ray's checkpoint_000000,
    checkpoint_000001, ...), newest first, as `restore` takes them."""
    earlier = sorted((p for p in latest.parent.glob("checkpoint_*")
                      if p.is_dir() and p.name < latest.name), reverse=True)
    return [(str(p), nullcontext(p)) for p in [latest, *earlier]]


def restore(trainer: Any, candidates: Iterable[tuple[str, AbstractContextManager[Path]]]
            ) -> tuple[Any, list[str]]:
    """Load the newest intact checkpoint of `candidates` into `trainer`. `candidates`: the
    checkpoints newest first, each a name and a context giving its local directory — opened
    one at a time, so from object storage only the ones tried are downloaded (`on_disk` for
    a local folder). Returns its trial-loop state (`trial.LoopState`; None: none is intact,
    start over) and why each newer checkpoint was refused."""
    from autostage.trial import LoopState

    refused: list[str] = []
    for name, opened in candidates:
        with opened as local:
            directory = Path(local)  # (Ray's as_directory gives a str)
            if _intact(directory, name, refused):
                trainer.load(str(directory))
                return LoopState.from_json(json.loads((directory / LOOP).read_text())), refused
    return None, refused


def _intact(directory: Path, name: str, refused: list[str]) -> bool:
    try:
        verify(directory, name)
    except TornCheckpoint as e:
        refused.append(str(e))
        return False
    return True


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
