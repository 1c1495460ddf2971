"""Checkpoint I/O: stock SAM-2.1 and official UnSAMv2 files load unchanged; saves use the official format.

Formats (the official release's checkpoints), all ``torch.save``'d dicts with the weights under ``"model"``:

* **SAM-2.1** (``sam2.1_hiera_*.pt``): the stock keys only. The UnSAMv2 modules keep their fresh initialisation.
* **UnSAMv2** (official): stock keys + ``sam_prompt_encoder.granularity_embedding.weight``,
  ``sam_prompt_encoder.fourier_embedder.mlp.mlp.{0,3,6}.*``, ``sam_mask_decoder.gra_token.weight``,
  ``sam_mask_decoder.gra_output_token_mlp.layers.{0,1,2}.*`` and, for the 28 LoRA'd linears,
  ``…{q,k,v,out}_proj.lora_{A,B}`` with the base weights either as ``…_proj.original_layer.{weight,bias}`` (what a
  model with LoRA saves) or plainly as ``…_proj.{weight,bias}`` (the official loader accepts both).
* **Merged UnSAMv2**: the granularity modules, plain base keys, no LoRA factors (LoRA folded into the weights).
  The official loader accepts it too: its freshly added LoRA has B = 0, i.e. contributes nothing.

Anything else is an error listing the keys, except the documented leftovers
``sam_prompt_encoder.granularity_round_embedding.*`` (ignored).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unsamv2.core.constants import GRANULARITY_PARAM_PREFIXES
from unsamv2.io.atomic import atomic_output
from unsamv2.io.disk_space import ensure_free_space, tensor_bytes
from unsamv2.model.lora import has_unmerged_lora

__all__ = [
    "DOCUMENTED_LEFTOVER_PREFIXES",
    "CheckpointError",
    "LoadReport",
    "checkpoint_format",
    "load_checkpoint",
    "load_state_dict_into_model",
    "official_state_dict",
    "read_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

#: Keys the official build_sam tolerates (a dropped "granularity rounding" module); ignored when present.
DOCUMENTED_LEFTOVER_PREFIXES: tuple[str, ...] = ("sam_prompt_encoder.granularity_round_embedding.",)

_MAX_LISTED = 30


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the model; the message names the file and the keys."""


@dataclass
class LoadReport:
    """What :func:`load_state_dict_into_model` did."""

    format: str  # "sam2", "unsamv2" or "unsamv2-merged"
    loaded: int = 0
    fresh: list[str] = field(default_factory=list)  # model keys left at their initialisation
    ignored: list[str] = field(default_factory=list)  # documented leftovers found in the file

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"format={self.format}, {self.loaded} tensors loaded, {len(self.fresh)} freshly initialised, "
            f"{len(self.ignored)} documented leftovers ignored"
        )


def _listing(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:_MAX_LISTED])
    more = f", … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"({len(keys)}): {shown}{more}"


def _model_size(state: Mapping[str, torch.Tensor]) -> str | None:
    """The SAM-2.1 size whose Hiera trunk shapes ``state`` has, or None if it matches none."""
    from unsamv2.model.build import detect_model_size

    try:
        return detect_model_size(state)
    except ValueError:
        return None


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the ``"model"`` state dict of a ``.pt`` checkpoint (CPU, ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / non-torch files
        # torch's own text runs over many lines (weights_only advice); one line is what the user needs.
        # For a weights_only refusal, the line naming what it refused ("Unsupported operand/global …") says most.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "")[:160]
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or a truncated or "
                              f"corrupt one ({type(exc).__name__}: {first})") from exc
    if not isinstance(obj, Mapping) or "model" not in obj:
        found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"checkpoint {path}: expected a dict with the weights under 'model', found {found}"
        )
    state = obj["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a mapping of parameter names to tensors")
    return dict(state)


def checkpoint_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"unsamv2"`` if the state dict holds any granularity-module key, else ``"sam2"``."""
    return "unsamv2" if any(k.startswith(GRANULARITY_PARAM_PREFIXES) for k in state_dict) else "sam2"


def _to_model_keys(state_dict: Mapping[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Map plain base-linear keys (``…q_proj.weight``) onto the LoRA form (``…q_proj.original_layer.weight``)
    and vice versa, whichever the model uses."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        target = key
        if key not in model_keys:
            head, _, leaf = key.rpartition(".")
            if head.endswith(".original_layer"):
                plain = f"{head[: -len('.original_layer')]}.{leaf}"
                if plain in model_keys:
                    target = plain
            else:
                wrapped = f"{head}.original_layer.{leaf}"
                if wrapped in model_keys:
                    target = wrapped
        if target in out:
            raise CheckpointError(f"checkpoint holds the same tensor twice, as {key!r} and in another form")
        out[target] = value
    return out


def load_state_dict_into_model(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> LoadReport:
    """Load a SAM-2.1 / UnSAMv2 / merged UnSAMv2 state dict into an UnSAMv2 model (built with LoRA, unmerged).

    Raises :class:`CheckpointError` listing unexpected keys, missing keys and shape mismatches.
    """
    ignored = [k for k in state_dict if k.startswith(DOCUMENTED_LEFTOVER_PREFIXES)]
    if ignored:
        log.warning("%s: ignoring documented leftover keys %s", source, ignored)
    state = {k: v for k, v in state_dict.items() if not k.startswith(DOCUMENTED_LEFTOVER_PREFIXES)}
    fmt = checkpoint_format(state)
    has_lora_keys = any(".lora_" in k for k in state)
    if has_lora_keys and not has_unmerged_lora(model):
        raise CheckpointError(
            f"{source} holds LoRA factors but the model's LoRA is merged or absent; load first, merge after"
        )

    model_state = model.state_dict()
    model_keys = set(model_state)
    state = _to_model_keys(state, model_keys)

    unexpected = sorted(set(state) - model_keys)
    missing = sorted(model_keys - set(state))
    lora_keys = {k for k in model_keys if ".lora_" in k}
    new_module_keys = {k for k in model_keys if k.startswith(GRANULARITY_PARAM_PREFIXES)} | lora_keys
    if fmt == "sam2":
        allowed_missing = new_module_keys
    elif has_lora_keys:
        allowed_missing = set()
    else:
        fmt = "unsamv2-merged"
        allowed_missing = lora_keys  # LoRA keeps B = 0: contributes nothing, as after merging
    bad_missing = [k for k in missing if k not in allowed_missing]
    shape_errors = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
        for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    if unexpected or bad_missing or shape_errors:
        parts = [f"{source} ({fmt} format) does not match the model"]
        if unexpected:
            parts.append(f"unexpected keys {_listing(unexpected)}")
        if bad_missing:
            parts.append(f"missing keys {_listing(bad_missing)}")
        if shape_errors:
            parts.append(f"shape mismatches {_listing(shape_errors)}")
        held, built = _model_size(state), _model_size(model_state)
        if held is not None and built is not None and held != built:
            # The key listing that follows is long; say first what is almost always the cause.
            parts.insert(0, f"{source} holds SAM-2.1 {held}, but a {built} model was requested (drop "
                            f"--model-size: the size is read from the checkpoint)")
        else:
            parts.append("(wrong model size? the size is detected from the checkpoint unless given explicitly)")
        raise CheckpointError("; ".join(parts))

    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # cannot happen after the checks above; guard against silent partial loads
        raise CheckpointError(f"{source}: unexpected keys {result.unexpected_keys}")
    return LoadReport(format=fmt, loaded=len(state), fresh=sorted(missing), ignored=ignored)


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> LoadReport:
    """Read ``path`` and load it into ``model`` (see :func:`load_state_dict_into_model`)."""
    return load_state_dict_into_model(model, read_checkpoint(path), source=str(path))


def official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on CPU, in the official key layout (our module names are the official ones)."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``{"model": state_dict}`` atomically in the official UnSAMv2 format (loadable by the official code).

    An unmerged model writes ``…_proj.original_layer.*`` + ``…_proj.lora_{A,B}`` (what the official model saves);
    a merged model writes the merged-checkpoint form (plain keys, no LoRA factors).
    """
    dest = Path(path)
    payload = {"model": official_state_dict(model)}
    ensure_free_space(dest.parent, tensor_bytes(payload), f"checkpoint {dest.name}")
    with atomic_output(dest) as tmp:
        torch.save(payload, tmp)
    return dest
