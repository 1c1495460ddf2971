"""Settings of the video benchmark: one dataclass mirroring the ``video:`` section of the workflow config.

The field names are the config keys, and the defaults of ``unsamv2 evaluate-video`` are these defaults. The models
themselves — checkpoints, SAM-2 size, input size, device, labels — are the ``evaluation`` section's
(:class:`unsamv2.evaluate.config.EvaluationConfig`), so the video numbers come from the same weights as the
interactive ones.

Modes (the ``granularity_mode`` column of the CSVs shows these names):

``fixed:<g>`` (UnSAMv2)
    every object clicked and propagated at g.
``first_frame_oracle`` (UnSAMv2)
    per object, the g of 0.1 … 1.0 whose first-frame mask has the highest J with the ground truth (ties: the
    smaller g), then propagated at that g. An oracle on the first frame only.
``single_mask`` (SAM-2)
    the click answered with SAM's single-mask output; tracked frames as SAM-2 does by itself.
``best_of_3_first_frame`` (SAM-2)
    of SAM's 3 candidates for the click, the one with the highest J against the first-frame ground truth
    (ties: the first), then tracked — the oracle counterpart of UnSAMv2's first-frame oracle.
``gt_mask`` (SAM-2)
    the first frame's ground-truth mask as the prompt: SAM-2's standard semi-supervised VOS, an upper bound for
    any click-based mode.

Importing this module does not import torch (the workflow reads it when Snakemake builds the DAG).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from unsamv2.core.constants import GRANULARITY_MAX, GRANULARITY_MIN
from unsamv2.core.settings import settings_from_mapping
from unsamv2.evaluate.config import EVALUATED_MODELS

__all__ = ["VIDEO_MODES_BY_MODEL", "VideoConfig", "VideoMode", "parse_video_mode", "video_modes_for_model"]

VideoModeKind = Literal["fixed", "first_frame_oracle", "single_mask", "best_of_3_first_frame", "gt_mask"]

#: The mode kinds each model kind can run.
VIDEO_MODES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "unsamv2": ("fixed", "first_frame_oracle"),
    "sam2": ("single_mask", "best_of_3_first_frame", "gt_mask"),
}


@dataclass(frozen=True)
class VideoMode:
    """One way of prompting the first frame; ``label`` is what the CSVs' mode columns show."""

    kind: VideoModeKind
    value: float | None = None  # only for "fixed"

    @property
    def label(self) -> str:
        return f"fixed:{round(self.value, 4)}" if self.kind == "fixed" else self.kind


def parse_video_mode(text: str) -> VideoMode:
    """Parse ``fixed:<g>``, ``first_frame_oracle``, ``single_mask``, ``best_of_3_first_frame`` or ``gt_mask``."""
    value = text.strip()
    if value in ("first_frame_oracle", "single_mask", "best_of_3_first_frame", "gt_mask"):
        return VideoMode(value)  # type: ignore[arg-type]
    if value.startswith("fixed:"):
        number = value.split(":", 1)[1]
        try:
            g = float(number)
        except ValueError:
            raise ValueError(f"video mode {text!r}: {number!r} is not a number") from None
        if not GRANULARITY_MIN - 1e-9 <= g <= GRANULARITY_MAX + 1e-9:
            raise ValueError(f"video mode {text!r}: g must lie in [{GRANULARITY_MIN}, {GRANULARITY_MAX}]")
        return VideoMode("fixed", round(g, 6))
    raise ValueError(f"unknown video mode {text!r}; expected fixed:<g>, first_frame_oracle, single_mask, "
                     "best_of_3_first_frame or gt_mask")


def video_modes_for_model(model_kind: str, texts: Sequence[str] | None) -> list[VideoMode]:
    """Parse the modes asked for ``model_kind``; none asked = :class:`VideoConfig`'s defaults for it.

    Raises ``ValueError`` for an unknown model kind, an unknown mode or a mode of the other model.
    """
    if model_kind not in VIDEO_MODES_BY_MODEL:
        raise ValueError(f"unknown model {model_kind!r}; expected one of {sorted(VIDEO_MODES_BY_MODEL)}")
    modes = [parse_video_mode(m) for m in (texts or VideoConfig().modes(model_kind))]
    bad = [m.label for m in modes if m.kind not in VIDEO_MODES_BY_MODEL[model_kind]]
    if bad:
        raise ValueError(f"video mode(s) {bad} do not apply to model {model_kind}; allowed: "
                         f"{list(VIDEO_MODES_BY_MODEL[model_kind])}")
    labels = [m.label for m in modes]
    if len(set(labels)) != len(labels):
        raise ValueError(f"video modes repeat: {labels}")
    return modes


@dataclass(frozen=True)
class VideoConfig:
    """Video benchmark (DAVIS-2017 protocol with a click and a granularity); every field is a config key.

    datasets, models: video benchmarks (``davis2017``, ``synthetic_video``) and models (nothing unless listed).
    unsamv2_modes, sam2_modes: the modes of each model (module docstring).
    dataset_options: loader options per benchmark (e.g. ``{synthetic_video: {level: part}}``).
    limit: evaluate only the first N sequences of each benchmark (``None`` = all).
    synthetic_sequences, synthetic_frames, synthetic_size, synthetic_seed: the generated ``synthetic_video``
        benchmark (sequences, frames per sequence, square frame side in pixels, seed).
    """

    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    unsamv2_modes: tuple[str, ...] = ("first_frame_oracle", "fixed:0.2", "fixed:0.5", "fixed:1.0")
    sam2_modes: tuple[str, ...] = ("single_mask", "best_of_3_first_frame", "gt_mask")
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    limit: int | None = None
    synthetic_sequences: int = 4
    synthetic_frames: int = 12
    synthetic_size: int = 128
    synthetic_seed: int = 2000

    def __post_init__(self) -> None:
        for key in ("datasets", "models", "unsamv2_modes", "sam2_modes"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        unknown = sorted(set(self.models) - set(EVALUATED_MODELS))
        if unknown:
            raise ValueError(f"video.models: unknown model(s) {unknown}; expected {list(EVALUATED_MODELS)}")
        for model in EVALUATED_MODELS:
            try:
                video_modes_for_model(model, self.modes(model))
            except ValueError as exc:
                raise ValueError(f"video.{model}_modes: {exc}") from None
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"video.limit must be >= 1 or null, got {self.limit}")
        if self.synthetic_sequences < 1:
            raise ValueError(f"video.synthetic_sequences must be >= 1, got {self.synthetic_sequences}")
        if self.synthetic_frames < 3:
            raise ValueError(f"video.synthetic_frames must be >= 3 (the first and last are not scored), got "
                             f"{self.synthetic_frames}")
        if self.synthetic_size < 32:
            raise ValueError(f"video.synthetic_size must be >= 32, got {self.synthetic_size}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VideoConfig:
        """Build from the ``video`` config section; an unknown key is an error naming it."""
        return settings_from_mapping(cls, "video", values)

    def modes(self, model: str) -> tuple[str, ...]:
        return self.unsamv2_modes if model == "unsamv2" else self.sam2_modes

    def options_for(self, dataset: str) -> dict[str, Any]:
        """Loader options of ``dataset`` (none unless configured)."""
        return dict(self.dataset_options.get(dataset, {}))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("datasets", "models", "unsamv2_modes", "sam2_modes"):
            d[key] = list(d[key])
        return d
