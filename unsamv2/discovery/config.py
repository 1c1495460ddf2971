"""Settings of the granularity-aware divide-and-conquer stage (method.md §1.2).

The defaults are those of the official `run_gra_dico.sh`; the workflow passes the `discovery` section of the
Snakemake config through unchanged, so the names here are the config keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DiscoveryConfig:
    divide: str = "maskcut"  # "maskcut" | "external"
    proposals_dir: str | None = None
    maskcut_masks: int = 3
    maskcut_tau: float = 0.15
    maskcut_long_side: int = 480
    confidence_threshold: float = 0.3
    relation: str = "containment"  # "containment" (code) | "iou" (paper)
    overlap_threshold: float = 0.8
    min_instance_area: float = 0.05
    thetas: tuple[float, ...] = field(default=(0.9, 0.8, 0.7, 0.6, 0.5))
    min_size: int = 4
    local_size: int = 768
    kept_threshold: float = 0.9
    nms_iou: float = 0.8
    nms_step: int = 5
    refine: str = "none"  # "none" | "cascadepsp"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.divide not in ("maskcut", "external"):
            raise ValueError(f"discovery.divide must be 'maskcut' or 'external', got {self.divide!r}")
        if self.divide == "external" and not self.proposals_dir:
            raise ValueError("discovery.proposals_dir must name a folder when discovery.divide is 'external'")
        if self.relation not in ("containment", "iou"):
            raise ValueError(f"discovery.relation must be 'containment' or 'iou', got {self.relation!r}")
        if self.refine not in ("none", "cascadepsp"):
            raise ValueError(f"discovery.refine must be 'none' or 'cascadepsp', got {self.refine!r}")
        object.__setattr__(self, "thetas", tuple(float(t) for t in self.thetas))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiscoveryConfig:
        """Build from a config mapping; an unknown key is an error naming it (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown discovery config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["thetas"] = list(self.thetas)
        return d
