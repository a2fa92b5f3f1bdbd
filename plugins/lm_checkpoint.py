"""Stage-boundary checkpoints of the transformers trainer, in safe formats only: weights as
safetensors, optimizer and RNG state loadable with `torch.load(weights_only=True)`, the rest
JSON. (The search seals every checkpoint with a manifest and verifies it before `load`:
`autostage.checkpoint_seal`.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(run: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    for objective, model in run.models.items():
        save_model(model, str(directory / f"{objective}.safetensors"))  # handles tied weights
    optimizer = {"kind": type(run.optimizer).__name__, "state": run.optimizer.state_dict()} \
        if run.optimizer else {}
    torch.save({"optimizer": optimizer, "torch_rng": torch.get_rng_state()},
               directory / "state.pt")
    (directory / "state.json").write_text(json.dumps({
        "objectives": list(run.models), "step": run.step, "batch": run.batch,
        "stage": run.stage.name if run.stage else None,
    }))


def load(run: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import load_model

    state = json.loads((directory / "state.json").read_text())
    for objective in state["objectives"]:
        load_model(run.model(objective), str(directory / f"{objective}.safetensors"),
                   device=str(run.device))
    saved = torch.load(directory / "state.pt", weights_only=True)
    torch.set_rng_state(saved["torch_rng"])
    run.step, run.batch = state["step"], state["batch"]
    # for a visit continued part-way (`continue_stage`); older checkpoints: a bare state
    run.saved_optimizer = saved["optimizer"] if "kind" in saved["optimizer"] else {}
