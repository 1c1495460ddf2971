"""What a training mode optimises: the model it builds, the parameters it unfreezes, and the check of both.

Two independent definitions meet here, so that the check can fail:

* the **builder** (:func:`build_training_model` → :func:`set_trainable`) selects parameters by rule — the
  granularity modules and LoRA by :func:`unsamv2.core.constants.is_granularity_parameter`, the decoder side by
  module (every parameter of ``model.sam_prompt_encoder`` and ``model.sam_mask_decoder``);
* the **check** (:func:`assert_trainable`) compares against data: the official key table of the parameters
  UnSAMv2 adds to SAM-2 (:func:`unsamv2_trainable_shapes`, names and shapes written out: the keys of the official
  checkpoints, from ``sam2/granularity_embedding.py`` and ``sam2/modeling/sam/{prompt_encoder,gra_mask_decoder,
  transformer}.py`` of yujunwei04/UnSAMv2), plus for the two demo modes every parameter named
  ``sam_prompt_encoder.*`` / ``sam_mask_decoder.*``.

A builder that unfreezes one parameter too many (or one too few), or attaches a module of another shape, is
stopped before the first step (:func:`unsamv2.train.loop.train` asserts).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from unsamv2.core.constants import is_granularity_parameter
from unsamv2.train.config import TrainConfig

__all__ = [
    "assert_trainable",
    "build_training_model",
    "expected_trainable_names",
    "set_trainable",
    "unsamv2_trainable_shapes",
]

log = logging.getLogger(__name__)

#: Width of SAM-2's prompt embeddings and mask-decoder tokens (every SAM-2.1 size).
_DECODER_DIM = 256

#: The granularity encoder, granularity mask token and its hypernetwork head: official key → shape.
#: Fourier features of width 128 → MLP 128 → 192 → 192 → 256 (``mlp.mlp.{0,3,6}``: a ReLU and a Dropout between
#: the Linears); the head is SAM's 3-layer token MLP 256 → 256 → 256 → 32.
_GRANULARITY_MODULE_SHAPES: dict[str, tuple[int, ...]] = {
    "sam_prompt_encoder.granularity_embedding.weight": (1, 256),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.0.weight": (192, 128),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.0.bias": (192,),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.3.weight": (192, 192),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.3.bias": (192,),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.6.weight": (256, 192),
    "sam_prompt_encoder.fourier_embedder.mlp.mlp.6.bias": (256,),
    "sam_mask_decoder.gra_token.weight": (1, 256),
    "sam_mask_decoder.gra_output_token_mlp.layers.0.weight": (256, 256),
    "sam_mask_decoder.gra_output_token_mlp.layers.0.bias": (256,),
    "sam_mask_decoder.gra_output_token_mlp.layers.1.weight": (256, 256),
    "sam_mask_decoder.gra_output_token_mlp.layers.1.bias": (256,),
    "sam_mask_decoder.gra_output_token_mlp.layers.2.weight": (32, 256),
    "sam_mask_decoder.gra_output_token_mlp.layers.2.bias": (32,),
}

#: What ``sam_mask_token`` trains instead of the granularity mask token and its head: SAM-2's four mask tokens (one
#: embedding table; slot 0 is the single-output token it reads) and slot 0's hypernetwork head, 256 → 256 → 256 → 32.
_SAM_SINGLE_OUTPUT_TOKEN_SHAPES: dict[str, tuple[int, ...]] = {
    "sam_mask_decoder.mask_tokens.weight": (4, 256),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight": (256, 256),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.bias": (256,),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.1.weight": (256, 256),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.1.bias": (256,),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.2.weight": (32, 256),
    "sam_mask_decoder.output_hypernetworks_mlps.0.layers.2.bias": (32,),
}
#: The added output token's parameters, absent from a ``sam_mask_token`` model.
_GRANULARITY_TOKEN_PREFIXES: tuple[str, ...] = ("sam_mask_decoder.gra_token.", "sam_mask_decoder.gra_output_token_mlp.")

#: The granularity MLP (Fourier features → hidden → hidden → 256), whose widths follow ``fourier_dim``.
_FOURIER_MLP = "sam_prompt_encoder.fourier_embedder.mlp.mlp"

#: The 7 attention modules of the mask decoder's two-way transformer that carry LoRA, with their internal width:
#: the token self-attentions work at the full 256, the token↔image cross-attentions downsample it by 2 (SAM-2's
#: ``attention_downsample_rate``).
_LORA_ATTENTIONS: tuple[tuple[str, int], ...] = (
    ("sam_mask_decoder.transformer.layers.0.self_attn", 256),
    ("sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image", 128),
    ("sam_mask_decoder.transformer.layers.0.cross_attn_image_to_token", 128),
    ("sam_mask_decoder.transformer.layers.1.self_attn", 256),
    ("sam_mask_decoder.transformer.layers.1.cross_attn_token_to_image", 128),
    ("sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token", 128),
    ("sam_mask_decoder.transformer.final_attn_token_to_image", 128),
)
#: The projections of each of them that LoRA wraps (q/k/v: 256 → internal width, out: internal width → 256).
_LORA_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")

#: Names of the whole prompt encoder and mask decoder (the demo modes train them all).
_DECODER_SIDE_PREFIXES: tuple[str, ...] = ("sam_prompt_encoder.", "sam_mask_decoder.")


def unsamv2_trainable_shapes(lora_rank: int = 8, fourier_dim: int = 128,
                             output_token: str = "granularity") -> dict[str, tuple[int, ...]]:
    """The official table of the parameters UnSAMv2 trains: name → shape (345,760 scalars at rank 8).

    The granularity modules, then ``lora_A`` (rank × in) and ``lora_B`` (out × rank) for the 4 projections of
    the 7 LoRA'd attention modules (none at rank 0). ``fourier_dim`` (the official 128; the paper's Table 6d
    ablates it) is the width of the granularity MLP's first layer. ``output_token="sam"`` (Fig. 10's ablation):
    SAM-2's single-output token and head take the place of the granularity token and its head.
    """
    table = dict(_GRANULARITY_MODULE_SHAPES)
    if output_token == "sam":
        table = {n: s for n, s in table.items() if not n.startswith(_GRANULARITY_TOKEN_PREFIXES)}
        table.update(_SAM_SINGLE_OUTPUT_TOKEN_SHAPES)
    hidden = (fourier_dim + _DECODER_DIM) // 2  # the official MLP's hidden width: 192 at 128
    table.update({f"{_FOURIER_MLP}.0.weight": (hidden, fourier_dim), f"{_FOURIER_MLP}.0.bias": (hidden,),
                  f"{_FOURIER_MLP}.3.weight": (hidden, hidden), f"{_FOURIER_MLP}.3.bias": (hidden,),
                  f"{_FOURIER_MLP}.6.weight": (_DECODER_DIM, hidden)})
    if lora_rank > 0:
        for attention, inner in _LORA_ATTENTIONS:
            for proj in _LORA_PROJECTIONS:
                d_in, d_out = (inner, _DECODER_DIM) if proj == "out_proj" else (_DECODER_DIM, inner)
                table[f"{attention}.{proj}.lora_A"] = (lora_rank, d_in)
                table[f"{attention}.{proj}.lora_B"] = (d_out, lora_rank)
    return table


def expected_trainable_names(model: nn.Module, mode: str, lora_rank: int = 8) -> set[str]:
    """The parameter names ``mode`` must train, from the official table (see :mod:`unsamv2.train.config`).

    ``unsamv2``: the table; ``demo_from_scratch``: the table and every ``sam_prompt_encoder.*`` /
    ``sam_mask_decoder.*`` parameter of ``model``; ``baseline_no_granularity``: those decoder-side parameters;
    ``sam_mask_token``: the table with SAM-2's single-output token in place of the granularity token.
    """
    table = set(unsamv2_trainable_shapes(lora_rank))
    decoder_side = {n for n, _ in model.named_parameters() if n.startswith(_DECODER_SIDE_PREFIXES)}
    if mode == "unsamv2":
        return table
    if mode == "sam_mask_token":
        return set(unsamv2_trainable_shapes(lora_rank, output_token="sam"))
    if mode == "demo_from_scratch":
        return table | decoder_side
    if mode == "baseline_no_granularity":
        return decoder_side
    raise ValueError(f"unknown trainable mode {mode!r}")


def set_trainable(model: nn.Module, mode: str) -> None:
    """Enable gradients for the parameters ``mode`` trains and freeze every other one (the builder's rule)."""
    granularity = {n for n, _ in model.named_parameters() if is_granularity_parameter(n)}
    if mode == "unsamv2":
        decoder_side: set[int] = set()
    elif mode == "sam_mask_token":
        decoder = model.sam_mask_decoder
        if getattr(decoder, "output_token", None) != "sam":
            raise ValueError("trainable 'sam_mask_token' expects a decoder built with output_token='sam'")
        decoder_side = {id(decoder.mask_tokens.weight)}
        decoder_side |= {id(p) for p in decoder.output_hypernetworks_mlps[0].parameters()}
    elif mode in ("demo_from_scratch", "baseline_no_granularity"):
        if mode == "baseline_no_granularity" and granularity:
            raise ValueError("trainable 'baseline_no_granularity' expects the stock SAM-2 architecture, but the "
                             "model has granularity / LoRA parameters")
        decoder_side = {id(p) for module in (model.sam_prompt_encoder, model.sam_mask_decoder)
                        for p in module.parameters()}
    else:
        raise ValueError(f"unknown trainable mode {mode!r}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in granularity or id(param) in decoder_side)


def _listing(names: list[str]) -> str:
    return f"{names[:10]}{' …' if len(names) > 10 else ''}"


def assert_trainable(model: nn.Module, mode: str, *, lora_rank: int = 8, fourier_dim: int = 128) -> None:
    """Raise ``RuntimeError`` unless exactly the parameters of ``mode`` require grad, with the official shapes.

    For ``unsamv2`` this is the paper's claim that only the granularity module and LoRA (of rank ``lora_rank``)
    train. Checked against :func:`unsamv2_trainable_shapes`, not against the builder's own selection; the
    message names the offending parameters.
    """
    params = dict(model.named_parameters())
    table = unsamv2_trainable_shapes(lora_rank, fourier_dim, "sam" if mode == "sam_mask_token" else "granularity")
    problems: list[str] = []
    if mode == "baseline_no_granularity":
        # The names (any rank) of the added modules must be absent: the baseline is the stock architecture.
        added = sorted(n for n in unsamv2_trainable_shapes(lora_rank=1) if n in params)
        if added:
            problems.append(f"{len(added)} UnSAMv2 parameter(s) in what must be the stock SAM-2 model "
                            f"{_listing(added)}")
    else:
        absent = sorted(set(table) - set(params))
        wrong = [f"{n} {tuple(params[n].shape)} (official {shape})" for n, shape in sorted(table.items())
                 if n in params and tuple(params[n].shape) != shape]
        if absent:
            problems.append(f"{len(absent)} official parameter(s) missing from the model {_listing(absent)}")
        if wrong:
            problems.append(f"{len(wrong)} parameter(s) with a wrong shape {_listing(wrong)}")
        if mode == "sam_mask_token":
            added = sorted(n for n in params if n.startswith(_GRANULARITY_TOKEN_PREFIXES))
            if added:
                problems.append(f"the granularity mask token, which this ablation removes, is present "
                                f"{_listing(added)}")
    wanted = expected_trainable_names(model, mode, lora_rank) & set(params)
    actual = {n for n, p in params.items() if p.requires_grad}
    extra, missing = sorted(actual - wanted), sorted(wanted - actual)
    if extra or missing:
        problems.append(f"{len(extra)} parameter(s) require grad but must be frozen {_listing(extra)}; "
                        f"{len(missing)} must train but are frozen {_listing(missing)}")
    if problems:
        raise RuntimeError(f"trainable mode {mode!r}: " + "; ".join(problems))
    if not wanted:
        raise RuntimeError(f"trainable mode {mode!r}: the model has no trainable parameter")


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """Build the model a config trains, on ``device``, with exactly its trainable set enabled.

    UnSAMv2 modes: :func:`unsamv2.model.build.build_unsamv2` (granularity modules, LoRA). The SAM-2-style
    baseline: :func:`unsamv2.model.build.build_sam2_model`, the stock SAM-2.1 architecture of the same size (no
    granularity module, no LoRA). Either loads ``config.base_checkpoint`` when given. The initialisation draws
    from torch's global generator: seed it first (:func:`unsamv2.train.loop.train` does).
    """
    from unsamv2.model.build import GranularityConfig, build_sam2_model, build_unsamv2

    if config.uses_granularity:
        gcfg = GranularityConfig(lora_rank=config.lora_rank, lora_dropout=config.lora_dropout,
                                 fourier_dim=config.fourier_dim, mlp_dropout=config.mlp_dropout,
                                 output_token="sam" if config.trainable == "sam_mask_token" else "granularity")
        model = build_unsamv2(config.model_size, config.base_checkpoint, device="cpu",
                              image_size=config.image_size, config=gcfg, mode="train")
    else:
        model = build_sam2_model(config.model_size, config.base_checkpoint, image_size=config.image_size,
                                 device="cpu")
        model.train()  # returned in eval mode; every module in training mode, as build_unsamv2(mode="train")
    set_trainable(model, config.trainable)
    return model.to(device)
