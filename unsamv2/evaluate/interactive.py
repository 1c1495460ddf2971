"""Interactive (click-based) evaluation: the NoC protocol of RITM / GraCo as run by UnSAMv2 (method.md §5.1).

The click loop, per object and per granularity:

* click 1 is the ground-truth pixel farthest from the boundary; every later click is RITM's next click on the
  current prediction (:mod:`unsamv2.evaluate.clicker`);
* all clicks so far go to the model as points, positives first, then negatives;
* from the 2nd click on, the previous low-resolution logits are fed back as ``mask_input``;
* prediction = full-resolution logits > ``mask_threshold`` (-1.0, the official evaluation value);
* at most ``max_clicks`` (20) clicks; the loop stops as soon as IoU >= the target IoU (0.90 for object datasets,
  0.85 for part datasets).

Granularity modes (the label each one writes into the ``granularity_mode`` column):

``oracle``
    GraCo's "*" protocol: for every object the loop runs for each g in 0.1, 0.2, ..., 1.0 and the g that reaches
    the target with the fewest clicks is kept; ties go to the higher IoU after the first click, then to the
    smaller g. An oracle choice (it looks at the ground truth), as in the paper's starred rows.
``fixed:<g>``
    one fixed granularity for every object.
``best_fixed``
    the single g of the grid with the lowest mean NoC at the target IoU over the whole dataset (ties: higher mean
    first-click IoU, then smaller g). Chosen on the evaluation set itself, so it is an oracle at dataset level.
    The chosen g is in the ``granularity`` column of the per-object CSV and in ``run.json``.
``none``
    no granularity input (stock SAM-2), single-mask output (``multimask_output=False``).
``best_of_3``
    stock SAM-2 with ``multimask_output=True``; at every click the candidate with the highest IoU against the
    ground truth is kept (and its logits fed back) — GraCo's/UnSAMv2's ``--oracle`` SAM path, also an oracle.

Efficiency (the evaluation is dominated by decoder calls once the image is encoded):

* each image is encoded once (``set_image``) for all its objects, clicks and granularities;
* the granularities of one object run in *lock-step*: at click k, the k-click prompts of every still-running
  granularity go to the model as one batched call (``predict_batch``). In particular the first click of all ten
  granularities is a single batched call.
* early stop for the oracle: once some g reaches the target at click k, every other g that has not reached it
  by click k is stopped — it can no longer win, whatever its later IoUs. (GraCo, running the g's one after the
  other, stops them after k + 1 clicks; lock-step lets us stop at k. Either way the selected g and its IoU
  sequence are exactly those of the exhaustive search; ``tests/evaluate`` checks this property.)

One deliberate difference from GraCo's selection: GraCo compares the index of the last click run, so a g that
reaches the target exactly at click 20 ties with a g that never reaches it; here reaching at click 20 wins. NoC is
the same either way (both count 20); only which sequence is reported for 1-IoU/NoC80 can differ in that corner.

Models plug in through the small :class:`ClickModel` protocol; :class:`Sam2BaselineModel` wraps sam2's own
``SAM2ImagePredictor`` and :class:`UnSAMv2ClickModel` the project's ``UnSAMv2ImagePredictor``.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from unsamv2.datasets.sample import ObjectMask, Sample
from unsamv2.evaluate.clicker import Click, Clicker
from unsamv2.evaluate.metrics import DatasetMetrics, compute_metrics, iou, noc

__all__ = [
    "GRANULARITY_GRID",
    "OFFICIAL_MASK_THRESHOLD",
    "ClickModel",
    "DatasetEvaluation",
    "GranularityMode",
    "ObjectRecord",
    "Prediction",
    "Sam2BaselineModel",
    "SessionResult",
    "SessionSpec",
    "UnSAMv2ClickModel",
    "clicks_to_target",
    "evaluate_dataset",
    "evaluate_object",
    "parse_granularity_mode",
    "run_sessions",
    "select_best_fixed",
    "select_oracle",
]

log = logging.getLogger(__name__)

#: Granularities searched by the oracle and by ``best_fixed``: 0.1, 0.2, ..., 1.0.
GRANULARITY_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
#: The official evaluation binarises logits at > -1.0 (``mask_threshold=-1`` / ``pred_probs > -1``).
OFFICIAL_MASK_THRESHOLD = -1.0


# ----------------------------------------------------------------------------------------------- model protocol


@dataclass(frozen=True)
class Prediction:
    """A model's answer to one prompt: C candidate masks (C = 1, or 3 for SAM's multimask output)."""

    logits: np.ndarray  # (C, H, W) float, full image resolution
    low_res_logits: np.ndarray  # (C, h, w) float, fed back as mask_input next click (256x256 at 1024-px input)
    iou_pred: np.ndarray  # (C,) the model's own IoU estimate (not used for any selection here)


@runtime_checkable
class ClickModel(Protocol):
    """What the click loop needs from a model. Two methods; see the adapters below for examples."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Encode an (H, W, 3) uint8 RGB image; later predictions refer to it."""

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        """Answer B independent prompts on the current image in one call.

        Args:
            points_xy: (B, N, 2) float32 click coordinates (x, y) in image pixels; every row has N clicks.
            labels: (B, N) int32, 1 positive / 0 negative.
            granularities: B values; ``None`` = no granularity input.
            mask_input: (B, h, w) previous low-res logits, or None (first click).
            multimask: ask for SAM's three candidate masks instead of one.
        """
        ...


def _as_prediction_list(logits: np.ndarray, low_res: np.ndarray, ious: np.ndarray, batch: int) -> list[Prediction]:
    """Split batched (B*C, ...) arrays into B Predictions; sam2 squeezes a batch of 1 away, so reshape by B."""
    height, width = logits.shape[-2:]
    lr_h, lr_w = low_res.shape[-2:]
    logits = logits.reshape(batch, -1, height, width)
    low_res = low_res.reshape(batch, -1, lr_h, lr_w)
    ious = ious.reshape(batch, -1)
    return [Prediction(logits[b], low_res[b], ious[b]) for b in range(batch)]


class Sam2BaselineModel:
    """Stock SAM-2 through sam2's own ``SAM2ImagePredictor`` (no granularity input).

    ``multimask=False`` is the ``none`` mode; ``multimask=True`` returns SAM's three candidates, from which the
    click loop keeps the best one against the ground truth (``best_of_3``).
    """

    supports_granularity = False

    def __init__(self, predictor: Any, name: str = "sam2") -> None:
        self.predictor = predictor
        self.name = name

    @classmethod
    def build(cls, config: str, checkpoint: str | Path | None, device: str, name: str = "sam2") -> Sam2BaselineModel:
        """Build from a sam2 Hydra config name (e.g. ``configs/sam2.1/sam2.1_hiera_s.yaml``) and a checkpoint.

        ``checkpoint=None`` gives random weights (tests and benchmarks only). The predictor is created as the
        official evaluation does: ``mask_threshold=-1``, no hole filling, no sprinkle removal (the logits are
        thresholded by the click loop itself).
        """
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        model = build_sam2(config, str(checkpoint) if checkpoint is not None else None, device=device)
        predictor = SAM2ImagePredictor(model, mask_threshold=OFFICIAL_MASK_THRESHOLD, max_hole_area=0.0,
                                       max_sprinkle_area=0.0)
        return cls(predictor, name=name)

    @classmethod
    def build_sized(cls, size: str, checkpoint: str | Path | None, image_size: int, device: str,
                    name: str = "sam2") -> Sam2BaselineModel:
        """Stock SAM-2.1 of ``size`` at another input size (e.g. the offline demo's 128-px models).

        sam2's ``SAM2ImagePredictor`` hard-codes the feature sizes of a 1024-px input; here they are derived from
        the model's image size, as :class:`unsamv2.model.predictor.UnSAMv2ImagePredictor` does.
        """
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from unsamv2.model.build import build_sam2_base
        from unsamv2.model.checkpoint import load_checkpoint

        model = build_sam2_base(size, image_size=image_size)
        if checkpoint is not None:
            load_checkpoint(model, checkpoint)
        model.to(device).eval()
        predictor = SAM2ImagePredictor(model, mask_threshold=OFFICIAL_MASK_THRESHOLD, max_hole_area=0.0,
                                       max_sprinkle_area=0.0)
        s = image_size
        predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        return cls(predictor, name=name)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        if any(g is not None for g in granularities):
            raise ValueError("stock SAM-2 has no granularity input: use granularity mode 'none' or 'best_of_3'")
        batch = points_xy.shape[0]
        masks, ious, low_res = self.predictor.predict(
            point_coords=points_xy,
            point_labels=labels,
            mask_input=None if mask_input is None else mask_input[:, None],
            multimask_output=multimask,
            return_logits=True,
        )
        return _as_prediction_list(masks, low_res, ious, batch)


class UnSAMv2ClickModel:
    """UnSAMv2 through :class:`unsamv2.model.predictor.UnSAMv2ImagePredictor` (one mask per granularity).

    The decoder is called with ``multimask_output=False`` as in the official evaluation (that flag only selects
    which IoU slot is reported; the mask is always the granularity token's). ``none``/``best_of_3`` are not
    available: UnSAMv2 always needs a granularity.
    """

    supports_granularity = True

    def __init__(self, predictor: Any, name: str = "unsamv2") -> None:
        self.predictor = predictor
        self.name = name

    @classmethod
    def build(cls, size: str | None, checkpoint: str | Path | None, device: str, image_size: int = 1024,
              name: str = "unsamv2") -> UnSAMv2ClickModel:
        """Build with :func:`unsamv2.model.build.build_unsamv2` (``checkpoint=None``: random weights).

        LoRA is folded into the base weights (``merge_lora_weights=True``): the same function with fewer matrix
        products, which matters because the oracle's decoder calls dominate the evaluation cost.
        """
        from unsamv2.model.build import build_unsamv2
        from unsamv2.model.predictor import UnSAMv2ImagePredictor

        model = build_unsamv2(size, checkpoint, device=device, image_size=image_size, merge_lora_weights=True)
        return cls(UnSAMv2ImagePredictor(model, mask_threshold=OFFICIAL_MASK_THRESHOLD), name=name)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict_batch(
        self,
        points_xy: np.ndarray,
        labels: np.ndarray,
        granularities: Sequence[float | None],
        mask_input: np.ndarray | None,
        multimask: bool = False,
    ) -> list[Prediction]:
        if multimask:
            raise ValueError("UnSAMv2 returns one mask per granularity: 'best_of_3' is a SAM-2 baseline mode")
        if any(g is None for g in granularities):
            raise ValueError("UnSAMv2 needs a granularity for every prompt: use 'oracle', 'fixed:<g>' or "
                             "'best_fixed'")
        batch = points_xy.shape[0]
        masks, ious, low_res = self.predictor.predict_queries(
            points_xy,
            labels,
            [float(g) for g in granularities if g is not None],
            mask_input=None if mask_input is None else mask_input[:, None],
            multimask_output=False,
            return_logits=True,
        )
        return _as_prediction_list(masks, low_res, ious, batch)


# ----------------------------------------------------------------------------------------------- modes


ModeKind = Literal["oracle", "fixed", "best_fixed", "none", "best_of_3"]


@dataclass(frozen=True)
class GranularityMode:
    """One way of choosing the granularity; ``label`` is what the summary's ``granularity_mode`` column shows."""

    kind: ModeKind
    value: float | None = None  # only for "fixed"

    @property
    def label(self) -> str:
        return f"fixed:{round(self.value, 4)}" if self.kind == "fixed" else self.kind

    @property
    def needs_granularity(self) -> bool:
        return self.kind in ("oracle", "fixed", "best_fixed")


def parse_granularity_mode(text: str) -> GranularityMode:
    """Parse ``oracle``, ``fixed:<g>`` (g in [0.1, 1]), ``best_fixed``, ``none`` or ``best_of_3``."""
    value = text.strip()
    if value in ("oracle", "best_fixed", "none", "best_of_3"):
        return GranularityMode(value)  # type: ignore[arg-type]
    if value.startswith("fixed:"):
        try:
            g = float(value.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"granularity mode {text!r}: '{value.split(':', 1)[1]}' is not a number") from None
        if not (0.1 - 1e-9 <= g <= 1.0 + 1e-9):
            raise ValueError(f"granularity mode {text!r}: g must lie in [0.1, 1.0]")
        return GranularityMode("fixed", round(g, 6))
    raise ValueError(f"unknown granularity mode {text!r}; expected oracle, fixed:<g>, best_fixed, none or best_of_3")


# ----------------------------------------------------------------------------------------------- click sessions


@dataclass(frozen=True)
class SessionSpec:
    """One click session to run on an object.

    ``in_oracle``: competes in the oracle selection. ``prunable``: may be stopped as soon as an oracle competitor
    reaches the target (only for sessions whose full sequence nobody else needs).
    """

    granularity: float | None
    multimask: bool = False
    in_oracle: bool = False
    prunable: bool = False


@dataclass
class SessionResult:
    spec: SessionSpec
    ious: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)
    reached: bool = False  # reached the target IoU
    pruned: bool = False  # stopped early because it could no longer win the oracle


@dataclass
class _SessionState:
    result: SessionResult
    clicker: Clicker
    pred: np.ndarray
    low_res: np.ndarray | None = None
    active: bool = True


def run_sessions(
    model: ClickModel,
    gt: np.ndarray,
    ignore: np.ndarray | None,
    specs: Sequence[SessionSpec],
    *,
    target_iou: float,
    max_clicks: int = 20,
    mask_threshold: float = OFFICIAL_MASK_THRESHOLD,
    feed_mask_input: bool = True,
) -> list[SessionResult]:
    """Run several click sessions on one object in lock-step, one batched model call per click.

    The model's image must already be set. All specs must share ``multimask`` (one call asks for one output
    shape). Returns one :class:`SessionResult` per spec, in order.
    """
    if not specs:
        return []
    if len({s.multimask for s in specs}) != 1:
        raise ValueError("run_sessions: all sessions of one call must share 'multimask'")
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    gt = np.asarray(gt, dtype=bool)
    empty = np.zeros_like(gt)
    states = [_SessionState(SessionResult(spec), Clicker(gt, ignore), empty) for spec in specs]
    multimask = specs[0].multimask

    for step in range(1, max_clicks + 1):
        active = [s for s in states if s.active]
        if not active:
            break
        if step == 1:
            # Every session starts from the same empty prediction, so the first click is computed once.
            first = active[0].clicker.make_next_click(empty)
            for state in active[1:]:
                state.clicker.add(first)
        else:
            for state in active:
                state.clicker.make_next_click(state.pred)

        prompts = [state.clicker.points_and_labels() for state in active]
        points = np.stack([p for p, _ in prompts]).astype(np.float32)
        labels = np.stack([lab for _, lab in prompts]).astype(np.int32)
        mask_input = None
        if step > 1 and feed_mask_input:
            mask_input = np.stack([state.low_res for state in active]).astype(np.float32)
        predictions = model.predict_batch(
            points, labels, [s.result.spec.granularity for s in active], mask_input, multimask
        )
        if len(predictions) != len(active):
            raise RuntimeError(f"model returned {len(predictions)} predictions for {len(active)} prompts")

        oracle_reached = False
        for state, prediction in zip(active, predictions):
            candidates = prediction.logits > mask_threshold
            if candidates.shape[-2:] != gt.shape:
                raise RuntimeError(f"model returned masks of size {candidates.shape[-2:]} for an image of {gt.shape}")
            scores = [iou(gt, candidate, ignore) for candidate in candidates]
            # Several candidates (best_of_3): keep the best against the ground truth, first on ties (np.argmax).
            best = int(np.argmax(scores))
            state.pred = candidates[best]
            state.low_res = prediction.low_res_logits[best]
            state.result.ious.append(float(scores[best]))
            if scores[best] >= target_iou:
                state.result.reached = True
                state.active = False
                oracle_reached = oracle_reached or state.result.spec.in_oracle
        if oracle_reached:
            # An oracle competitor needed `step` clicks; a session that has not reached the target by now needs
            # more, so it cannot be selected any more: stop it unless its full sequence is wanted elsewhere.
            for state in states:
                if state.active and state.result.spec.prunable:
                    state.active = False
                    state.result.pruned = True

    for state in states:
        state.result.clicks = list(state.clicker.clicks)
    return [state.result for state in states]


def clicks_to_target(ious: Sequence[float], target_iou: float) -> float:
    """1-based index of the first IoU >= target, or ``inf`` if the (possibly truncated) sequence never gets there."""
    for index, value in enumerate(ious):
        if value >= target_iou:
            return float(index + 1)
    return math.inf


def select_oracle(sequences: Sequence[Sequence[float]], target_iou: float) -> int:
    """Index of the oracle's choice: fewest clicks to the target, then highest first IoU, then the first index."""
    if not sequences:
        raise ValueError("select_oracle needs at least one IoU sequence")
    return min(range(len(sequences)), key=lambda i: (clicks_to_target(sequences[i], target_iou), -sequences[i][0], i))


@dataclass(frozen=True)
class ObjectOutcome:
    """The sequence reported for one object under one mode, and the granularity that produced it."""

    granularity: float | None
    ious: tuple[float, ...]


@dataclass(frozen=True)
class ObjectEvaluation:
    outcomes: dict[str, ObjectOutcome]  # by mode label; best_fixed is resolved later, at dataset level
    sweep: dict[float, tuple[float, ...]]  # full per-g sequences of the grid (only when best_fixed is asked)


def evaluate_object(
    model: ClickModel,
    obj: ObjectMask,
    modes: Sequence[GranularityMode],
    *,
    target_iou: float,
    max_clicks: int = 20,
    mask_threshold: float = OFFICIAL_MASK_THRESHOLD,
    feed_mask_input: bool = True,
    grid: Sequence[float] = GRANULARITY_GRID,
) -> ObjectEvaluation:
    """Run every session the requested modes need on one object (image already set) and collect the outcomes."""
    want_oracle = any(m.kind == "oracle" for m in modes)
    want_sweep = any(m.kind == "best_fixed" for m in modes)
    fixed_values = [float(m.value) for m in modes if m.kind == "fixed" and m.value is not None]

    # Granularity sessions: one per distinct g. A grid g is prunable only if nothing but the oracle needs it.
    needs_full: dict[float, bool] = {}
    if want_oracle or want_sweep:
        for g in grid:
            needs_full[g] = want_sweep  # best_fixed needs every grid g's complete sequence
    for g in fixed_values:
        needs_full[g] = True
    g_specs = [
        SessionSpec(g, multimask=False, in_oracle=want_oracle and g in grid, prunable=not full)
        for g, full in needs_full.items()
    ]
    results_by_g = {
        r.spec.granularity: r
        for r in run_sessions(model, obj.gt, obj.ignore, g_specs, target_iou=target_iou, max_clicks=max_clicks,
                              mask_threshold=mask_threshold, feed_mask_input=feed_mask_input)
    }

    outcomes: dict[str, ObjectOutcome] = {}
    if want_oracle:
        grid_results = [results_by_g[g] for g in grid]
        chosen = grid_results[select_oracle([r.ious for r in grid_results], target_iou)]
        outcomes["oracle"] = ObjectOutcome(chosen.spec.granularity, tuple(chosen.ious))
    for mode in modes:
        if mode.kind == "fixed" and mode.value is not None:
            result = results_by_g[float(mode.value)]
            outcomes[mode.label] = ObjectOutcome(result.spec.granularity, tuple(result.ious))
    for mode in modes:
        if mode.kind in ("none", "best_of_3"):
            (result,) = run_sessions(
                model, obj.gt, obj.ignore, [SessionSpec(None, multimask=mode.kind == "best_of_3")],
                target_iou=target_iou, max_clicks=max_clicks, mask_threshold=mask_threshold,
                feed_mask_input=feed_mask_input,
            )
            outcomes[mode.label] = ObjectOutcome(None, tuple(result.ious))
    sweep = {g: tuple(results_by_g[g].ious) for g in grid} if want_sweep else {}
    return ObjectEvaluation(outcomes, sweep)


def select_best_fixed(
    sweeps: Sequence[dict[float, Sequence[float]]], target_iou: float, max_clicks: int = 20,
    grid: Sequence[float] = GRANULARITY_GRID,
) -> float:
    """The dataset's best fixed g: lowest mean NoC@target, then highest mean first-click IoU, then smallest g."""
    if not sweeps:
        raise ValueError("select_best_fixed needs at least one object's sweep")

    def key(g: float) -> tuple[float, float, float]:
        nocs = [noc(s[g], target_iou, max_clicks) for s in sweeps]
        first = [s[g][0] for s in sweeps]
        return (float(np.mean(nocs)), -float(np.mean(first)), g)

    return min(grid, key=key)


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class ObjectRecord:
    """One row of the per-object CSV."""

    dataset: str
    image_id: str
    object_id: str
    mode: str
    granularity: float | None
    ious: tuple[float, ...]


@dataclass
class DatasetEvaluation:
    """Everything one ``evaluate_dataset`` call produced."""

    model: str
    dataset: str
    target_iou: float
    max_clicks: int
    modes: list[str]
    records: list[ObjectRecord] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    best_fixed_granularity: float | None = None
    n_images: int = 0
    elapsed_s: float = 0.0

    def sequences(self, mode: str) -> list[tuple[float, ...]]:
        return [r.ious for r in self.records if r.mode == mode]

    def metrics(self, mode: str) -> DatasetMetrics:
        return compute_metrics(self.sequences(mode), self.target_iou, self.max_clicks)


def _load_image(path: Path) -> np.ndarray:
    from unsamv2.io.images import load_image_rgb

    return load_image_rgb(path)


def evaluate_dataset(
    model: ClickModel,
    samples: Iterable[Sample],
    modes: Sequence[GranularityMode],
    *,
    dataset: str,
    target_iou: float,
    max_clicks: int = 20,
    mask_threshold: float = OFFICIAL_MASK_THRESHOLD,
    feed_mask_input: bool = True,
    limit: int | None = None,
    progress: bool = True,
    image_loader: Callable[[Path], np.ndarray] = _load_image,
) -> DatasetEvaluation:
    """Evaluate ``model`` on every object of ``samples`` under every mode; one ``set_image`` per image.

    A sample whose annotation or image cannot be read, or whose image and mask sizes disagree, is recorded in
    ``failures`` (with the file and the reason) and skipped; the rest of the dataset still runs.
    """
    from tqdm.auto import tqdm

    if not modes:
        raise ValueError("evaluate_dataset needs at least one granularity mode")
    supports = getattr(model, "supports_granularity", None)
    if supports is not None:  # fail before the first image rather than in the middle of the dataset
        wrong = [m.label for m in modes if m.needs_granularity != supports]
        if wrong:
            raise ValueError(f"model {model.name!r} cannot run granularity mode(s) {wrong}: it "
                             f"{'needs' if supports else 'has no'} granularity input")
    labels = [m.label for m in modes]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate granularity modes: {labels}")
    result = DatasetEvaluation(model=model.name, dataset=dataset, target_iou=target_iou, max_clicks=max_clicks,
                               modes=labels)
    sweeps: list[dict[float, tuple[float, ...]]] = []
    sweep_keys: list[tuple[str, str]] = []
    start = time.perf_counter()
    # islice stops *before* asking the lazy loader for the next image, so --limit N reads exactly N images.
    selected = samples if limit is None else itertools.islice(samples, limit)
    for sample in tqdm(selected, desc=f"{dataset} ({model.name})", unit="img", disable=not progress):
        result.n_images += 1
        if sample.error is not None:
            log.error("skipping %s: %s", sample.image_id, sample.error)
            result.failures.append({"image": sample.image_id, "path": str(sample.image_path), "error": sample.error})
            continue
        try:
            image = image_loader(sample.image_path)
            for obj in sample.objects:
                if obj.gt.shape != image.shape[:2]:
                    raise ValueError(f"mask of object {obj.object_id} is {obj.gt.shape}, image is {image.shape[:2]}")
        except Exception as exc:  # noqa: BLE001 - a bad image must not stop the dataset; it is reported
            log.error("skipping %s: %s", sample.image_path, exc)
            result.failures.append({"image": sample.image_id, "path": str(sample.image_path), "error": str(exc)})
            continue
        model.set_image(image)
        for obj in sample.objects:
            evaluation = evaluate_object(model, obj, modes, target_iou=target_iou, max_clicks=max_clicks,
                                         mask_threshold=mask_threshold, feed_mask_input=feed_mask_input)
            for mode in modes:
                if mode.kind == "best_fixed":
                    continue
                outcome = evaluation.outcomes[mode.label]
                result.records.append(ObjectRecord(dataset, sample.image_id, obj.object_id, mode.label,
                                                   outcome.granularity, outcome.ious))
            if evaluation.sweep:
                sweeps.append(evaluation.sweep)
                sweep_keys.append((sample.image_id, obj.object_id))

    if any(m.kind == "best_fixed" for m in modes) and sweeps:
        g_best = select_best_fixed(sweeps, target_iou, max_clicks)
        result.best_fixed_granularity = g_best
        log.info("%s: best fixed granularity %.1f", dataset, g_best)
        for (image_id, object_id), sweep in zip(sweep_keys, sweeps):
            result.records.append(ObjectRecord(dataset, image_id, object_id, "best_fixed", g_best, sweep[g_best]))
    result.elapsed_s = time.perf_counter() - start
    return result
