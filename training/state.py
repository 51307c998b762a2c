"""The train-state file: every network, optimiser moment, per-head latent and counter a run needs to
continue exactly, under its own header (`kind: train-state`), beside the servable generator file.

Tensors are named `<net>.<param>` for the networks, `latents` for the per-head latents, and
`<optimizer>.<param id>.<field>` for optimiser state; the metadata holds the counters, the recipe and the
optimisers' param groups.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sage_backend.checkpoint import CheckpointError, load_tensors, save_tensors

KIND = "train-state"


@dataclass
class Counters:
    """Where a run stands: optimiser steps taken, real samples read (over all ranks), training seconds."""

    step: int = 0
    samples_seen: int = 0
    wall_time_s: float = 0.0


def save_state(path: str | Path, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               latents: torch.Tensor | None, counters: Counters, recipe: dict) -> None:
    """Atomically write the state; `recipe` is the TrainConfig as a dict."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, net in nets.items():
        tensors.update({f"{prefix}.{k}": v for k, v in net.state_dict().items()})
    if latents is not None:
        tensors["latents"] = latents.detach()
    groups = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        for pid, pstate in sd["state"].items():
            tensors.update({f"{name}.{pid}.{k}": v if torch.is_tensor(v) else torch.tensor(v) for k, v in pstate.items()})
        groups[name] = sd["param_groups"]
    meta = {"kind": KIND, "step": counters.step, "samples_seen": counters.samples_seen, "wall_time_s": counters.wall_time_s,
            "train_config": recipe, "param_groups": groups}
    save_tensors(path, tensors, meta)


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a train-state file; raises CheckpointError for any other kind of file
    (states written before the header existed carry no kind and are read as train states)."""
    tensors, meta = load_tensors(path)
    if meta.get("kind", KIND) != KIND or "param_groups" not in meta:
        raise CheckpointError(f"{path}: not a train-state file")
    return tensors, meta


def load_state(path: str | Path, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               latents: torch.Tensor | None, device: torch.device, same_recipe: dict) -> Counters:
    """Restore `nets`, `optimizers` and `latents` in place from `path` and return its counters. Raises
    CheckpointError if the state was made with another model or stage than `same_recipe` (a TrainConfig dict)."""
    tensors, meta = read_state(path)
    made_by = meta.get("train_config", {})
    if made_by.get("model") != same_recipe["model"] or made_by.get("stage") != same_recipe["stage"]:
        raise CheckpointError(f"{path}: the state was made by a different recipe (model/stage differ)")
    for prefix, net in nets.items():
        net.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    if latents is not None:
        with torch.no_grad():
            latents.copy_(tensors["latents"])
    for name, opt in optimizers.items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(name + "."):
                _, pid, field = key.split(".", 2)
                state.setdefault(int(pid), {})[field] = value.to(device)
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
    # States written before the `_s` rename name the seconds "wall_time".
    return Counters(meta["step"], meta["samples_seen"], meta.get("wall_time_s", meta.get("wall_time", 0.0)))


def ema_generator_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The EMA generator's state dict and the per-head latents (None without) of a train-state file."""
    tensors, _ = read_state(path)
    weights = {k[len("G_ema."):]: v for k, v in tensors.items() if k.startswith("G_ema.")}
    return weights, tensors.get("latents")
