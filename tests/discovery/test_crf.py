"""MaskCut's dense CRF and the weight-free CRF refinement: known two-region answers, CutLER's filters, the
hierarchy after refinement and determinism."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from unsamv2.datasets.synthetic_scenes import write_synthetic_dataset
from unsamv2.discovery import crf as crf_module
from unsamv2.discovery.config import DiscoveryConfig
from unsamv2.discovery.crf import (
    CrfParams,
    crf_unary,
    dense_crf,
    maskcut_crf,
    refine_in_window,
    refine_window,
    refine_with_crf,
)
from unsamv2.discovery.features import build_backbone
from unsamv2.discovery.pipeline import discover_masks
from unsamv2.discovery.refine import build_refiner
from unsamv2.io.images import load_image_rgb

A, B = (200, 60, 40), (40, 90, 210)


def two_regions(h: int = 64, w: int = 96, edge: int = 53) -> tuple[np.ndarray, np.ndarray]:
    """Colour A left of column ``edge``, colour B from it on, with mild noise; returns (image, A's mask)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((h, w), bool)
    truth[:, :edge] = True
    img = np.where(truth[..., None], np.array(A), np.array(B)).astype(np.float64)
    img += rng.normal(0.0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def staircase(truth: np.ndarray, patch: int = 16) -> np.ndarray:
    """The patch-grid version of a mask: a patch is in when more than half of it is (MaskCut/conquer-like)."""
    h, w = truth.shape
    grid = truth.reshape(h // patch, patch, w // patch, patch).mean(axis=(1, 3)) > 0.5
    return np.repeat(np.repeat(grid, patch, axis=0), patch, axis=1)


def test_unary_is_cutlers_softmax_of_the_cut() -> None:
    u = crf_unary(np.array([[True, False]]))
    # softmax([0, 1]) = (1 − σ(1), σ(1)); energy −log p: inside the cut bg 1.3133, fg 0.3133; outside swapped.
    lo, hi = -math.log(1 / (1 + math.exp(-1))), -math.log(1 / (1 + math.exp(1)))
    assert u.shape == (2, 2) and u.dtype == np.float32
    assert u[:, 0] == pytest.approx([hi, lo], abs=1e-6)
    assert u[:, 1] == pytest.approx([lo, hi], abs=1e-6)


def test_unary_of_a_soft_mask_uses_the_foreground_fraction_as_cutlers_logit() -> None:
    # m = 0.5: logits (0.5, 0.5), both labels −log 0.5; m = 0.25: softmax(0.75, 0.25) = (σ(0.5), σ(−0.5)).
    u = crf_unary(np.array([[0.5, 0.25]]))
    assert u[:, 0] == pytest.approx([math.log(2), math.log(2)], abs=1e-6)
    assert u[:, 1] == pytest.approx([math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(0.5))], abs=1e-6)


def test_crf_moves_a_patch_staircase_onto_the_colour_edge() -> None:
    img, truth = two_regions()
    cut = staircase(truth)  # edge at column 53 → the patch mask stops at column 48
    assert np.count_nonzero(cut ^ truth) == 64 * 5
    assert np.array_equal(dense_crf(img, cut), truth)
    # A cut that overshoots the edge is pulled back to it too.
    over = np.zeros_like(truth)
    over[:, :64] = True
    assert np.array_equal(dense_crf(img, over), truth)


def test_crf_rejects_wrong_shapes() -> None:
    img, truth = two_regions()
    with pytest.raises(ValueError, match="mask: expected shape"):
        dense_crf(img, truth[:10])
    with pytest.raises(ValueError, match="uint8 RGB"):
        dense_crf(img.astype(np.float32), truth)


def test_maskcut_crf_fills_holes() -> None:
    # A frame of colour A around a window of background colour B: the CRF keeps the window out, CutLER's
    # hole filling puts it back, so the result is the full square.
    img = np.zeros((64, 64, 3), np.uint8)
    img[:] = B
    square = np.zeros((64, 64), bool)
    square[8:56, 8:56] = True
    window = np.zeros_like(square)
    window[24:40, 24:40] = True
    img[square & ~window] = A
    ring = dense_crf(img, square)
    assert np.array_equal(ring, square & ~window)
    assert np.array_equal(maskcut_crf(img, square), square)


def test_maskcut_crf_drops_a_mask_the_crf_changed_too_much(monkeypatch: pytest.MonkeyPatch) -> None:
    img, truth = two_regions()
    cut = np.zeros_like(truth)
    cut[:, :20] = True  # 20 columns
    # IoU(CRF output, cut) = 20 / 53 < 0.5 → CutLER drops the mask (an empty one); 20 / 39 ≥ 0.5 keeps it.
    monkeypatch.setattr(crf_module, "dense_crf", lambda image, mask, params: truth)
    assert not maskcut_crf(img, cut).any()
    assert np.array_equal(maskcut_crf(img, cut, min_iou=0.3), truth)
    cut[:, :39] = True
    assert np.array_equal(maskcut_crf(img, cut), truth)
    assert not maskcut_crf(img, np.zeros_like(truth)).any()


def test_refine_window_grows_the_box_and_clips_to_the_image() -> None:
    m = np.zeros((100, 200), bool)
    m[40:60, 10:110] = True  # 20 rows, 100 columns
    # rows: ceil(0.1·20) + 4 = 6 → [34, 66); cols: ceil(0.1·100) + 4 = 14 → [0 (clipped from −4), 124)
    assert refine_window(m) == (34, 66, 0, 124)


def test_refine_with_crf_snaps_to_the_edge_and_keeps_the_input_when_it_would_change_too_much(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    img, truth = two_regions()
    assert np.array_equal(refine_with_crf(img, staircase(truth)), truth)
    assert refine_with_crf(img, np.zeros_like(truth)) is None
    # A result far from the input (IoU < 0.5) is not taken: the part stays as it was instead of vanishing.
    monkeypatch.setattr(crf_module, "dense_crf", lambda image, mask, params: np.zeros_like(mask))
    thin = np.zeros_like(truth)
    thin[10:12, 5:40] = True
    assert np.array_equal(refine_with_crf(img, thin), thin)


def test_a_large_window_is_refined_at_reduced_resolution_onto_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 x 96 = 6144 px with at most 1536 → the CRF runs on 32 x 48 (scale 1/2) and its margin is upsampled.
    seen = []
    margin = crf_module.crf_margin

    def recording(image: np.ndarray, mask: np.ndarray, params: CrfParams, scale: float = 1.0,
                  stop_when_stable: bool = False) -> np.ndarray:
        seen.append((mask.shape, scale, sorted(np.unique(mask).tolist())))
        return margin(image, mask, params, scale, stop_when_stable)

    monkeypatch.setattr(crf_module, "crf_margin", recording)
    half = CrfParams(refine_max_pixels=1536)
    # Edge at column 52 falls between two reduced pixels: the answer is exact.
    img, truth = two_regions(edge=52)
    assert np.array_equal(refine_in_window(img, staircase(truth), half), truth)
    assert seen == [((32, 48), 0.5, [0.0, 1.0])]
    # Edge at column 53 splits reduced pixel 26: at most that one column of the full image is wrong (the
    # staircase misses 5 columns).
    img, truth = two_regions(edge=53)
    cut = staircase(truth)
    wrong = refine_in_window(img, cut, half) ^ truth
    assert wrong.any(axis=0).sum() <= 1 and wrong[:, 52:54].sum() == wrong.sum()
    # The staircase ends on a reduced pixel's edge (column 48 = 24 reduced pixels), so its unary was hard; a cut
    # one column wider covers half of reduced pixels (., 24): their unary is the soft fraction 0.5.
    cut[:, 48] = True
    refine_in_window(img, cut, half)
    assert seen[-1] == ((32, 48), 0.5, [0.0, 0.5, 1.0])
    # A window within the limit runs the full-resolution CRF.
    seen.clear()
    assert np.array_equal(refine_in_window(img, staircase(truth), CrfParams(refine_max_pixels=64 * 96)), truth)
    assert seen == [((64, 96), 1.0, [False, True])]


def _stop_step(margins: list[np.ndarray]) -> int:
    """The number of steps the early stop runs, given the margins after 1 … n full-count steps: the first k >= 2
    whose labels equal those after k − 1 steps, else n."""
    return next((k for k in range(2, len(margins) + 1)
                 if np.array_equal(margins[k - 1] > 0, margins[k - 2] > 0)), len(margins))


@pytest.mark.parametrize("noise", [2.0, 25.0])
def test_the_early_stop_returns_the_full_crf_after_the_first_step_that_changes_no_label(noise: float) -> None:
    # Known answer from the full-count CRF itself: with stop_when_stable the margin is exactly that of
    # inference(k), k = the first step whose labels equal the previous step's (or all steps).
    rng = np.random.default_rng(1)
    img, truth = two_regions(edge=52)
    img = np.clip(img + rng.normal(0.0, noise, img.shape), 0, 255).astype(np.uint8)
    mask = staircase(truth)
    margins = [crf_module.crf_margin(img, mask, CrfParams(iterations=k)) for k in range(1, 11)]
    early = crf_module.crf_margin(img, mask, CrfParams(iterations=10), stop_when_stable=True)
    k = _stop_step(margins)
    assert 2 <= k < 10  # the stop happens here, so the test tells the rule apart from running all steps
    np.testing.assert_allclose(early, margins[k - 1], rtol=0, atol=1e-6)


def test_the_refinement_stops_early_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    img, truth = two_regions(edge=52)
    mask = staircase(truth)
    calls = []
    original = crf_module.crf_margin

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003
        calls.append(kwargs.get("stop_when_stable", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(crf_module, "crf_margin", recording)
    full_resolution = 64 * 96
    assert np.array_equal(refine_in_window(img, mask, CrfParams(refine_max_pixels=full_resolution)), truth)
    assert np.array_equal(refine_in_window(img, mask, CrfParams(refine_max_pixels=full_resolution // 4)), truth)
    stop_off = CrfParams(refine_max_pixels=full_resolution, refine_stop_when_stable=False)
    assert np.array_equal(refine_in_window(img, mask, stop_off), truth)
    assert np.array_equal(maskcut_crf(img, mask, CrfParams()), truth)  # MaskCut's CRF: CutLER's full count
    assert calls == [True, True, False, False]
    assert DiscoveryConfig(crf_refine_stop_when_stable=False).crf_params().refine_stop_when_stable is False


def test_crf_settings_are_validated_with_their_key() -> None:
    with pytest.raises(ValueError, match="discovery.crf_"):
        DiscoveryConfig(crf_iterations=0)
    with pytest.raises(ValueError, match="discovery.crf_min_iou"):
        DiscoveryConfig(crf_min_iou=1.5)
    with pytest.raises(ValueError, match="discovery.refine"):
        DiscoveryConfig(refine="superpixels")
    with pytest.raises(ValueError, match="refine_max_pixels"):
        DiscoveryConfig(crf_refine_max_pixels=0)
    assert DiscoveryConfig().crf_params() == CrfParams()  # defaults are CutLER's constants
    assert CrfParams() == CrfParams(10, 3.0, 7.0, 50.0, 5.0, 10.0, 3072, True)
    assert DiscoveryConfig(crf_refine_max_pixels=500).crf_params().refine_max_pixels == 500


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("scenes"), 3, seed=3, image_size=(160, 160))


@pytest.fixture(scope="module")
def scenes(scene_dir: Path) -> list[np.ndarray]:
    return [load_image_rgb(p) for p in sorted((scene_dir / "images").glob("*.png"))]


# The demo's discovery settings for the offline features (config/demo.yaml), scaled to the small scenes.
DEMO = {"maskcut_tau": 0.5, "min_instance_area": 0.01, "maskcut_long_side": 160, "local_size": 256}


def _instances_and_parts(anns: list) -> tuple[dict[int, np.ndarray], list]:
    instances = {a.instance_id: a.mask for a in anns if a.is_divide}
    return instances, [a for a in anns if a.is_part]


def test_refined_parts_never_leave_their_instance(scenes: list[np.ndarray]) -> None:
    backbone = build_backbone("offline")
    cfg = DiscoveryConfig(**DEMO, refine="crf")
    crf_refiner = build_refiner("crf", crf=cfg.crf_params())
    # Windows over 256 px (nearly all) refined at reduced resolution, whose upsampled edges can fall anywhere.
    reduced_refiner = build_refiner("crf", crf=DiscoveryConfig(**DEMO, crf_refine_max_pixels=256).crf_params())

    def dilating(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # A refiner that always grows a mask by 6 px: without the clipping its parts would leave the instance.
        from scipy import ndimage

        return ndimage.binary_dilation(mask, iterations=6)

    n_parts = 0
    for image in scenes:
        for refiner in (crf_refiner, reduced_refiner, dilating):
            instances, parts = _instances_and_parts(discover_masks(image, backbone, cfg, refiner=refiner))
            for part in parts:
                assert part.mask.any()
                assert not (part.mask & ~instances[part.instance_id]).any()
            n_parts += len(parts)
    assert n_parts > 0
    # The check can fail: the same dilating refiner without the clipping puts parts outside their instance.
    unclipped = DiscoveryConfig(**DEMO, refine="cascadepsp")
    instances, parts = _instances_and_parts(discover_masks(scenes[0], backbone, unclipped, refiner=dilating))
    assert any((p.mask & ~instances[p.instance_id]).any() for p in parts)


def test_refinement_is_deterministic(scenes: list[np.ndarray]) -> None:
    # 512: windows both at full and at reduced resolution.
    cfg = DiscoveryConfig(**DEMO, refine="crf", crf_refine_max_pixels=512)
    runs = []
    for _ in range(2):
        backbone = build_backbone("offline")
        refiner = build_refiner("crf", crf=cfg.crf_params())
        runs.append([discover_masks(image, backbone, cfg, refiner=refiner) for image in scenes])
    first, second = runs
    assert sum(len(a) for a in first) > 0
    for a_image, b_image in zip(first, second, strict=True):
        assert len(a_image) == len(b_image)
        for a, b in zip(a_image, b_image, strict=True):
            assert np.array_equal(a.mask, b.mask)
            assert (a.is_divide, a.is_part, a.instance_id) == (b.is_divide, b.is_part, b.instance_id)


def test_maskcut_crf_masks_follow_edges_better_than_the_patch_grid(scene_dir: Path) -> None:
    """On scenes with exact ground truth, the CRF'd divide masks match their best object better than the
    nearest-upsampled patch grid does (the step's purpose, measured on the pipeline's own masks)."""
    from unsamv2.core.mask_overlap import mask_iou_matrix
    from unsamv2.discovery.pipeline import divide_maskcut
    from unsamv2.io.masks import decode_rle
    from unsamv2.io.pseudo_labels import read_annotations

    backbone = build_backbone("offline")
    gains = []
    for path in sorted((scene_dir / "annotations").glob("*.json")):
        gt = np.stack([decode_rle(a["segmentation"]) for a in read_annotations(path)]).astype(bool)
        image = load_image_rgb(scene_dir / "images" / f"{path.stem}.png")
        raw, _ = divide_maskcut(image, backbone, DiscoveryConfig(**DEMO, maskcut_crf=False))
        refined, _ = divide_maskcut(image, backbone, DiscoveryConfig(**DEMO))
        if len(raw) == len(refined) > 0:
            gains.append(mask_iou_matrix(refined, gt).max(axis=1).mean() - mask_iou_matrix(raw, gt).max(axis=1).mean())
    assert gains and float(np.mean(gains)) > 0.0
