"""Stage-boundary checkpoints of the transformers trainer, in safe formats only: weights as
safetensors, optimizer and RNG state loadable with `torch.load(weights_only=True)`, the rest
JSON. A manifest of SHA-256 digests is written last; a checkpoint whose files do not match it
is torn and is refused (`latest_intact` then picks the one before it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError

MANIFEST = "manifest.json"


class TornCheckpoint(AutostageError):
    """A checkpoint's files do not match its manifest (a write was cut short)."""


def save(run: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for objective, model in run.models.items():
        save_model(model, str(directory / f"{objective}.safetensors"))  # handles tied weights
        names.append(f"{objective}.safetensors")
    torch.save({"optimizer": run.optimizer.state_dict() if run.optimizer else {},
                "torch_rng": torch.get_rng_state()}, directory / "state.pt")
    (directory / "state.json").write_text(json.dumps({
        "objectives": list(run.models), "step": run.step, "batch": run.batch,
        "stage": run.stage.name if run.stage else None,
    }))
    names += ["state.pt", "state.json"]
    manifest = {name: _digest(directory / name) for name in names}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def verify(directory: Path) -> dict[str, Any]:
    """The checkpoint's state.json, or TornCheckpoint when a file is missing or altered."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise TornCheckpoint(f"checkpoint {directory} has no readable manifest") from None
    for name, digest in manifest.items():
        path = directory / name
        if not path.exists() or _digest(path) != digest:
            raise TornCheckpoint(f"checkpoint {directory}: {name} does not match its manifest")
    return json.loads((directory / "state.json").read_text())


def load(run: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import load_model

    state = verify(directory)
    for objective in state["objectives"]:
        load_model(run.model(objective), str(directory / f"{objective}.safetensors"),
                   device=str(run.device))
    saved = torch.load(directory / "state.pt", weights_only=True)
    torch.set_rng_state(saved["torch_rng"])
    run.step, run.batch = state["step"], state["batch"]
    run.saved_optimizer = saved["optimizer"]  # for a branch that continues the same stage


def latest_intact(directories: list[Path]) -> Path | None:
    """The newest checkpoint (by name order) that verifies; torn ones are skipped."""
    for directory in sorted(directories, reverse=True):
        try:
            verify(directory)
        except TornCheckpoint:
            continue
        return directory
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
