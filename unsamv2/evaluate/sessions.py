"""Click sessions: the NoC click loop of RITM / GraCo as run by UnSAMv2, on one object, for every mode at once.

The click loop, per object and per granularity:

* click 1 is the ground-truth pixel farthest from the boundary; every later click is RITM's next click on the
  current prediction (:mod:`unsamv2.evaluate.clicker`);
* all clicks so far go to the model as points, positives first, then negatives;
* from the 2nd click on, the previous low-resolution logits are fed back as ``mask_input``;
* prediction = full-resolution logits > ``mask_threshold`` (:data:`unsamv2.core.constants.EVAL_MASK_THRESHOLD`,
  -1.0, the official evaluation value) — except SAM's three candidates of ``best_of_3``, which are binarised at
  > 0 (``core.constants.MULTIMASK_MASK_THRESHOLD``) both to choose the best candidate and to report its IoU, as
  the SAM ``--oracle`` path of the official UnSAMv2 / GraCo evaluation scripts does;
* at most ``max_clicks`` (20) clicks; the loop stops as soon as IoU >= the target IoU (0.90 for object datasets,
  0.85 for part datasets).

Efficiency (the evaluation is dominated by decoder calls once the image is encoded):

* the granularities of one object run in *lock-step*: at click k, the k-click prompts of every still-running
  granularity go to the model as one batched call (``predict_batch``). In particular the first click of all ten
  granularities is a single batched call.
* early stop for the oracle: once some g reaches the target at click k, every other g that has not reached it
  by click k is stopped — it can no longer win, whatever its later IoUs. (GraCo, running the g's one after the
  other, stops them after k + 1 clicks; lock-step lets us stop at k. Either way the selected g and its IoU
  sequence are exactly those of the exhaustive search; ``tests/evaluate`` checks this property.)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unsamv2.core.clicks import Click
from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID, MULTIMASK_MASK_THRESHOLD
from unsamv2.datasets.sample import ObjectMask
from unsamv2.evaluate.adapters import ClickModel
from unsamv2.evaluate.clicker import Clicker
from unsamv2.evaluate.metrics import iou
from unsamv2.evaluate.modes import GranularityMode, select_oracle

__all__ = [
    "ObjectEvaluation",
    "ObjectOutcome",
    "SessionResult",
    "SessionSpec",
    "evaluate_object",
    "run_sessions",
]

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
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    multimask_threshold: float = MULTIMASK_MASK_THRESHOLD,
    feed_mask_input: bool = True,
) -> list[SessionResult]:
    """Run several click sessions on one object in lock-step, one batched model call per click.

    The model's image must already be set. All specs must share ``multimask`` (one call asks for one output
    shape). Single-mask sessions binarise the logits at ``> mask_threshold``; multimask sessions binarise the
    candidates at ``> multimask_threshold``, keep the one with the highest IoU against the ground truth (the first
    on ties) and report that IoU. Returns one :class:`SessionResult` per spec, in order.
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
    threshold = multimask_threshold if multimask else mask_threshold

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
            candidates = prediction.logits > threshold
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
    mask_threshold: float = EVAL_MASK_THRESHOLD,
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
