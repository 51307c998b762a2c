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
from training.config import TrainConfig

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
    mismatch = resume_mismatch(meta, same_recipe, tensors.get("latents"), latents)
    if mismatch:
        raise CheckpointError(f"{path} cannot continue here: {mismatch}")
    for prefix, net in nets.items():
        try:
            net.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        except RuntimeError as exc:  # a state from another version of the networks: torch lists every tensor
            raise CheckpointError(f"{path}: its {prefix} does not fit this program's networks "
                                  f"({str(exc).splitlines()[-1].strip()}); start a new run in another --out") from None
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


def resume_mismatch(meta: dict, recipe: dict, saved_latents: torch.Tensor | None, latents: torch.Tensor | None) -> str | None:
    """Why a state (its metadata `meta`, its per-head latents) cannot continue under `recipe` (a TrainConfig dict)
    and data with `latents` (heads, z_dim), and what to do instead; None when it can."""
    made_by, step = meta.get("train_config", {}), meta.get("step", 0)
    fresh = "or start a new run in another --out"
    if made_by.get("stage") != recipe["stage"]:
        return f"it is a stage {made_by.get('stage')} run, not stage {recipe['stage']}; resume it with sage-train stage{made_by.get('stage')}"
    if made_by.get("model") != recipe["model"]:
        return (f"it trains model preset {made_by.get('model')!r}, the recipe names {recipe['model']!r}; resume with the recipe "
                f"it was saved with (leave out --recipe), {fresh}")
    if recipe["stage"] == 2 and made_by.get("style") != recipe["style"]:
        return f"it trains style {made_by.get('style')!r}, not {recipe['style']!r}; resume with --style {made_by.get('style')}, {fresh}"
    was, now = TrainConfig.from_dict(made_by).phase(step).resolution, TrainConfig.from_dict(recipe).phase(step).resolution
    if was != now:
        return (f"at step {step} it trains at {was} px, the recipe at {now} px; resume with the recipe it was saved with "
                f"(leave out --recipe), {fresh}")
    if latents is not None and saved_latents is None:
        return (f"it holds no per-head latents (trained without reconstruction_weight), the recipe asks for them; "
                f"resume with the recipe it was saved with, {fresh}")
    if latents is not None and len(saved_latents) != len(latents):
        return (f"it was trained on {len(saved_latents)} heads of {made_by.get('data')!r}, data {recipe['data']!r} has "
                f"{len(latents)}; resume with --data pointing at the data it was trained on, {fresh}")
    return None


def ema_generator_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The EMA generator's state dict and the per-head latents (None without) of a train-state file."""
    tensors, _ = read_state(path)
    weights = {k[len("G_ema."):]: v for k, v in tensors.items() if k.startswith("G_ema.")}
    return weights, tensors.get("latents")
