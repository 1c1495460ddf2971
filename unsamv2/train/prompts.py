"""Click simulation for training: the prompts of SAM-2's interactive training loop, as UnSAMv2 trains.

Per target mask the training loop makes one **first click**, a positive point drawn uniformly inside the ground
truth (stock SAM-2 ``get_next_point(gt, None, "uniform")``), then a few **correction clicks**, each sampled from
the error between the current prediction (``logits > 0``) and the ground truth by one of two samplers:

``"uniform"`` — stock SAM-2 ``sample_random_points_from_errors`` (UnSAMv2 HEAD)
    A pixel drawn uniformly from FP ∪ FN (every error pixel equally likely, so the larger error type is chosen
    more often); the click is positive iff the pixel lies in FN.

``"graco"`` — the GraCo-style sampler of UnSAMv2 commit ``d1e5765`` (``graco_sample``)
    Distance transforms of the FN and FP maps (OpenCV ``DIST_L2`` with a 5×5 mask, computed on the maps padded
    by one zero pixel so that the image border counts as a region boundary). The error type with the larger
    maximum distance is chosen and a pixel is drawn uniformly from where its distance is ``> max / 2``: the
    "inner" part of the largest error blob, rather than its centre (RITM/"center") or anywhere (uniform).

Tie and corner-case rules (the same for the scalar and the batched functions, and as the references):

* graco: the click is positive iff ``max dt_FN > max dt_FP`` **strictly**; equal maxima choose FP (negative).
  The inner region uses a strict ``dt > max / 2``; it always contains the maximum pixel, so it is never empty.
* no error at all (``pred == gt``), both samplers: a negative click uniform over the background ``~gt``.
* no error and no background (gt covers the whole image): a negative click at ``(y, x) = (0, 0)`` — what
  both references return (the argmax of an all-zero map, resp. the untouched zero-initialised point).
* batched first click on an **empty** ground truth (possible after augmentation): stock SAM-2 then sees
  "no error" and returns a negative background click, so :func:`sample_first_points` does the same. The
  scalar :func:`first_click` refuses an empty mask instead (its contract is a positive click).

Coordinates: the scalar functions return ``(y, x)`` (row, column) integers. The batched torch functions return
what the SAM-2 prompt encoder takes: ``points`` ``float32 [N, 1, 2]`` in ``(x, y)`` order and ``labels``
``int32 [N, 1]`` (1 positive, 0 negative), on the device of the input masks. Pixel ``(x, y)`` means the pixel's
integer index, as stock SAM-2 (no half-pixel offset).

Randomness comes only from the ``numpy.random.Generator`` passed in, so a seeded run repeats exactly.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from unsamv2.core.clicks import Click, padded_distance_transform
from unsamv2.train.config import CORRECTION_METHODS

__all__ = [
    "CORRECTION_METHODS",
    "correction_click",
    "distance_to_boundary",
    "first_click",
    "graco_correction",
    "sample_correction_points",
    "sample_first_points",
    "uniform_correction",
]

CorrectionMethod = Literal["uniform", "graco"]


def _as_bool_2d(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        raise TypeError(f"{name}: expected a bool mask, got dtype {arr.dtype} (threshold logits with > 0 first)")
    return arr


def _uniform_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel drawn uniformly from a non-empty bool region, as (y, x)."""
    flat = np.flatnonzero(region)
    idx = int(flat[rng.integers(flat.size)])
    y, x = divmod(idx, region.shape[1])
    return y, x


def _background_negative(gt: np.ndarray, rng: np.random.Generator) -> Click:
    """The 'no error' click: uniform negative on the background, or (0, 0) when there is no background."""
    background = ~gt
    if not background.any():
        return Click(0, 0, False)
    y, x = _uniform_pixel(background, rng)
    return Click(y, x, False)


def first_click(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """The initial positive click: a pixel drawn uniformly inside ``mask``; returns ``(y, x)``.

    Raises ``ValueError`` for an empty mask (there is no positive click to make; see the module docstring for
    what the batched :func:`sample_first_points` does instead).
    """
    gt = _as_bool_2d(mask, "mask")
    if not gt.any():
        raise ValueError("first_click: the mask is empty, there is no pixel to click inside it")
    return _uniform_pixel(gt, rng)


def _errors(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = _as_bool_2d(gt, "gt")
    pred = _as_bool_2d(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same shape, got {gt.shape} and {pred.shape}")
    return gt & ~pred, ~gt & pred  # FN (needs a positive click), FP (needs a negative click)


def uniform_correction(gt: np.ndarray, pred: np.ndarray, rng: np.random.Generator) -> Click:
    """Stock SAM-2 correction: a pixel uniform over FP ∪ FN, positive iff it lies in FN."""
    fn, fp = _errors(gt, pred)
    errors = fn | fp
    if not errors.any():
        return _background_negative(gt, rng)
    y, x = _uniform_pixel(errors, rng)
    return Click(y, x, bool(fn[y, x]))


def distance_to_boundary(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel, with the image border as boundary.

    OpenCV ``distanceTransform(DIST_L2, maskSize=5)`` on the region padded by one zero pixel, as the GraCo-style
    reference; float32 ``(H, W)``, 0 outside the region.
    """
    return padded_distance_transform(_as_bool_2d(region, "region"), mask_size=5)


def graco_correction(gt: np.ndarray, pred: np.ndarray, rng: np.random.Generator) -> Click:
    """GraCo-style correction: inner part of the error type whose distance transform peaks higher.

    Positive iff ``max dt_FN > max dt_FP`` (ties → negative); the pixel is uniform over ``dt > max / 2`` of the
    chosen type. No error → a uniform negative background click.
    """
    fn, fp = _errors(gt, pred)
    if not (fn.any() or fp.any()):
        return _background_negative(gt, rng)
    dt_fn = distance_to_boundary(fn)
    dt_fp = distance_to_boundary(fp)
    max_fn, max_fp = float(dt_fn.max()), float(dt_fp.max())
    positive = max_fn > max_fp
    dt, peak = (dt_fn, max_fn) if positive else (dt_fp, max_fp)
    # peak >= 1 for any non-empty region, so the inner region holds at least the peak pixel.
    y, x = _uniform_pixel(dt > peak / 2.0, rng)
    return Click(y, x, positive)


def correction_click(
    gt: np.ndarray, pred: np.ndarray, rng: np.random.Generator, method: CorrectionMethod = "uniform"
) -> Click:
    """One correction click by ``method`` (``"uniform"`` or ``"graco"``)."""
    if method == "uniform":
        return uniform_correction(gt, pred, rng)
    if method == "graco":
        return graco_correction(gt, pred, rng)
    raise ValueError(f"unknown correction method {method!r}; expected one of {CORRECTION_METHODS}")


# --------------------------------------------------------------------------------------------- batched (torch)


def _as_numpy_stack(masks: torch.Tensor, name: str) -> np.ndarray:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise TypeError(f"{name}: expected a bool torch tensor of shape (N, H, W)")
    return masks.detach().cpu().numpy()


def _pack(clicks: list[Click], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    points = torch.tensor([[[c.x, c.y]] for c in clicks], dtype=torch.float32).reshape(len(clicks), 1, 2)
    labels = torch.tensor([[int(c.is_positive)] for c in clicks], dtype=torch.int32).reshape(len(clicks), 1)
    return points.to(device), labels.to(device)


def sample_first_points(gt: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """First click for each of N masks: ``points`` float32 [N, 1, 2] as (x, y), ``labels`` int32 [N, 1].

    A non-empty mask gets a positive click uniform inside it; an empty one a negative background click
    (stock SAM-2 behaviour for ``get_next_point(gt, None, "uniform")``).
    """
    gts = _as_numpy_stack(gt, "gt")
    clicks = []
    for m in gts:
        if m.any():
            clicks.append(Click(*first_click(m, rng), True))
        else:
            clicks.append(_background_negative(m, rng))
    return _pack(clicks, gt.device)


def sample_correction_points(
    gt: torch.Tensor, pred: torch.Tensor, rng: np.random.Generator, method: CorrectionMethod = "uniform"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per mask from bool ``gt`` and ``pred`` (N, H, W); same output as the first click.

    ``pred`` is the current prediction thresholded as in SAM-2 training (``high_res_logits > 0``). The error
    maps go through NumPy/OpenCV on the CPU (the GraCo reference does the same for its distance transform).
    """
    if method not in CORRECTION_METHODS:
        raise ValueError(f"unknown correction method {method!r}; expected one of {CORRECTION_METHODS}")
    gts = _as_numpy_stack(gt, "gt")
    preds = _as_numpy_stack(pred, "pred")
    if gts.shape != preds.shape:
        raise ValueError(f"gt and pred must have the same shape, got {tuple(gt.shape)} and {tuple(pred.shape)}")
    clicks = [correction_click(g, p, rng, method) for g, p in zip(gts, preds, strict=True)]
    return _pack(clicks, gt.device)
