"""Settings of the granularity-aware divide-and-conquer stage (paper §3.3).

The defaults are those of the official `run_gra_dico.sh`; the workflow passes the `discovery` section of the
Snakemake config through unchanged, so the names here are the config keys.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unsamv2.core.settings import settings_from_json, settings_from_mapping
from unsamv2.discovery.crf import CrfParams

#: Granularity formulas of the scoring stage (config key ``granularity.formula``); the first is the default:
#: ``code`` = the official ``compute_granularity_scores_sqrt``, ``paper`` = the paper's Eq. 3 alone.
GRANULARITY_FORMULAS: tuple[str, ...] = ("code", "paper")
#: ``discovery.divide``: CutLER's MaskCut on backbone features, proposals read from ``proposals_dir``, SA-1B's own
#: masks as the pseudo-labels (``sa1b_gt``, Table 5's supervised row), or MaskCut's proposals plus SA-1B's masks
#: (``maskcut+sa1b_gt``, UnSAMv2+, paper §3.6); see :mod:`unsamv2.discovery.ground_truth`.
DIVIDE_METHODS: tuple[str, ...] = ("maskcut", "external", "sa1b_gt", "maskcut+sa1b_gt")
#: The ``divide`` values that read each image's SA-1B annotation JSON.
GROUND_TRUTH_DIVIDES: tuple[str, ...] = ("sa1b_gt", "maskcut+sa1b_gt")
#: ``discovery.relation``: how a part is assigned to an instance — containment (official code) or IoU (paper).
RELATIONS: tuple[str, ...] = ("containment", "iou")
#: ``discovery.refine``: refinement of instances and parts: none, CascadePSP (learned, the official code's), or
#: the weight-free ``crf`` that snaps patch-grid masks to image edges (:mod:`unsamv2.discovery.refine`).
REFINERS: tuple[str, ...] = ("none", "cascadepsp", "crf")


@dataclass(frozen=True)
class DiscoveryConfig:
    divide: str = "maskcut"  # "maskcut" | "external" | "sa1b_gt" | "maskcut+sa1b_gt"
    proposals_dir: str | None = None
    # Folder of the SA-1B annotation JSONs (<image stem>.json); None = beside each image, as the tars extract.
    ground_truth_dir: str | None = None
    maskcut_masks: int = 3
    maskcut_tau: float = 0.15
    maskcut_long_side: int = 480
    # CutLER's dense CRF on every MaskCut mask (unsamv2.discovery.crf); the crf_* defaults are its constants.
    maskcut_crf: bool = True
    crf_iterations: int = 10
    crf_gaussian_sxy: float = 3.0
    crf_gaussian_compat: float = 7.0
    crf_bilateral_sxy: float = 50.0
    crf_bilateral_srgb: float = 5.0
    crf_bilateral_compat: float = 10.0
    crf_min_iou: float = 0.5
    # refine: crf only: a window of more pixels is refined at a reduced resolution (unsamv2.discovery.crf).
    crf_refine_max_pixels: int = 3072
    # refine: crf only: stop the mean-field steps at the first one that changes no pixel's label.
    crf_refine_stop_when_stable: bool = True
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
    refine: str = "none"  # "none" | "cascadepsp" | "crf"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.divide not in DIVIDE_METHODS:
            raise ValueError(f"discovery.divide must be one of {', '.join(DIVIDE_METHODS)}, got {self.divide!r}")
        if self.divide == "external" and not self.proposals_dir:
            raise ValueError("discovery.proposals_dir must name a folder when discovery.divide is 'external'")
        if self.relation not in RELATIONS:
            raise ValueError(f"discovery.relation must be one of {', '.join(RELATIONS)}, got {self.relation!r}")
        if self.refine not in REFINERS:
            raise ValueError(f"discovery.refine must be one of {', '.join(REFINERS)}, got {self.refine!r}")
        if not 0.0 <= self.crf_min_iou <= 1.0:
            raise ValueError(f"discovery.crf_min_iou must be in [0, 1], got {self.crf_min_iou}")
        self.crf_params()  # validates the crf_* keys, naming them
        object.__setattr__(self, "thetas", tuple(float(t) for t in self.thetas))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DiscoveryConfig:
        """Build from the ``discovery`` config section; an unknown key is an error naming it."""
        return settings_from_mapping(cls, "discovery", values)

    @classmethod
    def from_json(cls, text: str | None) -> DiscoveryConfig:
        """Parse the ``--settings`` JSON object the workflow passes (empty/None = all defaults)."""
        return settings_from_json(cls, "discovery", text)

    def crf_params(self) -> CrfParams:
        """The dense-CRF parameters of the ``crf_*`` keys."""
        try:
            return CrfParams(self.crf_iterations, self.crf_gaussian_sxy, self.crf_gaussian_compat,
                             self.crf_bilateral_sxy, self.crf_bilateral_srgb, self.crf_bilateral_compat,
                             self.crf_refine_max_pixels, self.crf_refine_stop_when_stable)
        except ValueError as exc:
            raise ValueError(f"discovery.crf_*: {exc}") from exc

    @property
    def clips_parts_to_instance(self) -> bool:
        """Whether refined parts are cut back to their refined instance (the weight-free refiner keeps the
        hierarchy; CascadePSP is applied as the official code does, without this)."""
        return self.refine == "crf"

    @property
    def refines_instances(self) -> bool:
        """Whether the refiner also runs on each instance before conquer (as the official code's CascadePSP).
        Not for ``crf`` on MaskCut instances that its CRF already made pixel-precise (nor on SA-1B's masks,
        pixel-precise already): the same CRF again would only cost time. ``sa1b_gt`` refines nothing."""
        return self.uses_backbone and self.refine != "none" and not (
            self.refine == "crf" and self.divide in ("maskcut", "maskcut+sa1b_gt") and self.maskcut_crf
        )

    @property
    def needs_ground_truth(self) -> bool:
        """Whether each image's SA-1B annotation JSON is read (``ground_truth_dir`` or beside the image)."""
        return self.divide in GROUND_TRUTH_DIVIDES

    @property
    def uses_backbone(self) -> bool:
        """Whether a feature backbone runs (MaskCut or conquer); ``sa1b_gt`` writes SA-1B's masks as they are."""
        return self.divide != "sa1b_gt"

    @property
    def uses_gpu(self) -> bool:
        """Whether a discovery job needs a GPU: ``sa1b_gt`` runs no model, whatever ``device`` says."""
        return self.uses_backbone and self.device.startswith("cuda")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["thetas"] = list(self.thetas)
        return d

    def to_json(self) -> str:
        """The ``--settings`` JSON of ``unsamv2 discover`` (sorted keys: a stable Snakemake param)."""
        return json.dumps(self.to_dict(), sort_keys=True)
