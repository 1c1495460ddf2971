"""Video: propagate a clicked object at a granularity through a folder of frames (paper Fig. 9; official `sam2_video_predictor.py` and video notebook).

``UnSAMv2VideoPredictor`` is sam2's ``SAM2VideoPredictor`` with the granularity modules attached. Each object
carries its own granularity (given with its clicks); on every frame that object is decoded with that granularity
token — on the clicked frame and on every propagated frame (which has no clicks, only the not-a-point token plus the
granularity token). Memory attention and the memory encoder are SAM-2's, unchanged; the object pointer comes from
the granularity token's output (the decoder returns it in the slot sam2 reads).

Where this differs from, or matches, the official predictor (line-by-line comparison):

* Official ``propagate_in_video(state, gra=g)`` decodes every object of the call at ``g`` (and with ``gra=None``
  without any granularity token); the clicked frame keeps the mask of its click's ``gra``. Here
  ``propagate_in_video(state, granularity=g)`` does the same for a given ``g``; without it (``None``), each object
  is propagated at the granularity of its own prompt — there is no "no token" propagation for UnSAMv2.
* An object initialised from a mask (``add_new_mask``): the mask is taken as the output and its object pointer comes
  from a decoder pass **without** the granularity token, as in the official code (which calls the frame inference
  there without ``gra``); the object is then propagated at the granularity given with the mask.

``Sam2BaselineVideoPredictor`` is sam2's stock predictor on the same frame folders, with the two controls the video
benchmark's SAM-2 baselines need: a single-mask first click and a first-click candidate chosen by the caller.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sam2.sam2_video_predictor import SAM2VideoPredictor

from unsamv2.core.constants import EVAL_MASK_THRESHOLD
from unsamv2.io.images import list_images, load_image_rgb
from unsamv2.model.granularity import validate_granularity

__all__ = ["Sam2BaselineVideoPredictor", "UnSAMv2VideoPredictor", "keep_frame_features", "list_frames",
           "track_object"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _natural_key(path: Path) -> list[object]:
    # "2.jpg" before "10.jpg": compare digit runs as numbers (sam2 requires integer names; we accept any names).
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of a frame folder in natural order (``2.png`` before ``10.png``); any image format."""
    frames = sorted(list_images(folder), key=_natural_key)
    if not frames:
        raise FileNotFoundError(f"no image frames found in {folder}")
    return frames


def _init_frame_folder_state(
    predictor: SAM2VideoPredictor,
    video_path: str | os.PathLike[str],
    offload_video_to_cpu: bool,
    offload_state_to_cpu: bool,
    async_loading_frames: bool,
) -> dict[str, Any]:
    """sam2 1.1.0's inference state for a folder of frames of any image format, in natural name order.

    sam2 itself only reads folders of ``<int>.jpg`` files; this reads every image format through
    :func:`unsamv2.io.images.load_image_rgb` (EXIF orientation, clear errors), preprocesses as sam2's frame loader
    does, and keeps the frame paths in ``state["frame_paths"]``.
    """
    if async_loading_frames:
        raise ValueError(f"async frame loading is not supported by {type(predictor).__name__}")
    frame_paths = list_frames(video_path)
    compute_device = predictor.device
    first = load_image_rgb(frame_paths[0])
    height, width = first.shape[:2]
    size = predictor.image_size
    images = torch.zeros(len(frame_paths), 3, size, size, dtype=torch.float32)
    mean = torch.tensor(_IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(_IMAGENET_STD)[:, None, None]
    for i, path in enumerate(frame_paths):
        rgb = first if i == 0 else load_image_rgb(path)
        if rgb.shape[:2] != (height, width):
            raise ValueError(
                f"frame {path} is {rgb.shape[1]}×{rgb.shape[0]}, but the first frame is {width}×{height}"
            )
        # Same preprocessing as sam2's frame loader: square resize with PIL's default filter, /255, normalise.
        resized = np.asarray(Image.fromarray(rgb).resize((size, size)), dtype=np.float32)
        images[i] = (torch.from_numpy(resized / 255.0).permute(2, 0, 1) - mean) / std
    if not offload_video_to_cpu:
        images = images.to(compute_device)

    state: dict[str, Any] = {
        "images": images,
        "num_frames": len(frame_paths),
        "offload_video_to_cpu": offload_video_to_cpu,
        "offload_state_to_cpu": offload_state_to_cpu,
        "video_height": height,
        "video_width": width,
        "device": compute_device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else compute_device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
        "frame_paths": frame_paths,
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)
    return state


class _FeatureStoreMixin:
    """Keeps every frame's image features when ``state["feature_store"]`` is a dict (opt-in, see
    :func:`keep_frame_features`): sam2 caches only the last frame, so each new prompt-and-propagate pass on the
    same video would encode every frame again. Features are deterministic, so reusing them changes nothing."""

    def _get_image_feature(self, inference_state: dict[str, Any], frame_idx: int, batch_size: int) -> Any:
        store = inference_state.get("feature_store")
        if store is not None and frame_idx in store:
            inference_state["cached_features"] = {frame_idx: store[frame_idx]}
        result = super()._get_image_feature(inference_state, frame_idx, batch_size)  # type: ignore[misc]
        if store is not None:
            store[frame_idx] = inference_state["cached_features"][frame_idx]
        return result


def keep_frame_features(inference_state: dict[str, Any]) -> None:
    """Keep the image features of every frame in this state from now on, so that passes after ``reset_state`` do
    not encode the frames again (memory: one backbone output per frame, tens of MB at 1024 px, on the model's
    device — a few GB for a 100-frame DAVIS sequence)."""
    inference_state.setdefault("feature_store", {})


class UnSAMv2VideoPredictor(_FeatureStoreMixin, SAM2VideoPredictor):
    """``SAM2VideoPredictor`` with a granularity per object. Build it with ``build_unsamv2(..., video=True)``."""

    # ------------------------------------------------------------------ state
    @torch.inference_mode()
    def init_state(
        self,
        video_path: str | os.PathLike[str],
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> dict[str, Any]:
        """Load a folder of frames (any image format, natural name order) into a fresh inference state.

        The state layout is sam2 1.1.0's, plus ``frame_paths``, ``granularity_per_obj`` and
        ``propagation_granularity`` (the ``granularity`` of a running ``propagate_in_video`` call, else None).
        """
        state = _init_frame_folder_state(self, video_path, offload_video_to_cpu, offload_state_to_cpu,
                                         async_loading_frames)
        # granularity per client-side object id (ids survive sam2's re-indexing in remove_object)
        state["granularity_per_obj"] = {}
        state["propagation_granularity"] = None
        return state

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: dict[str, Any],
        frame_idx: int,
        obj_id: int,
        points: np.ndarray | torch.Tensor | None = None,
        labels: np.ndarray | torch.Tensor | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: np.ndarray | torch.Tensor | None = None,
        *,
        granularity: float,
    ) -> tuple[int, list[int], torch.Tensor]:
        """sam2's ``add_new_points_or_box`` plus the object's granularity (used on this and every tracked frame).

        Returns ``(frame_idx, obj_ids, mask logits [num_objects, 1, H, W])`` at the video resolution.
        """
        self._check_frame(inference_state, frame_idx)
        inference_state["granularity_per_obj"][obj_id] = validate_granularity(granularity)
        return super().add_new_points_or_box(
            inference_state,
            frame_idx,
            obj_id,
            points=points,
            labels=labels,
            clear_old_points=clear_old_points,
            normalize_coords=normalize_coords,
            box=box,
        )

    @torch.inference_mode()
    def add_new_mask(
        self,
        inference_state: dict[str, Any],
        frame_idx: int,
        obj_id: int,
        mask: np.ndarray | torch.Tensor,
        *,
        granularity: float,
    ) -> tuple[int, list[int], torch.Tensor]:
        """sam2's ``add_new_mask`` plus the granularity the object is propagated at.

        As in the official predictor, the mask frame itself involves no granularity: the mask is the output and the
        object pointer comes from a decoder pass without the granularity token.
        """
        self._check_frame(inference_state, frame_idx)
        inference_state["granularity_per_obj"][obj_id] = validate_granularity(granularity)
        return super().add_new_mask(inference_state, frame_idx, obj_id, mask)

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: dict[str, Any],
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
        granularity: float | None = None,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """sam2's ``propagate_in_video``; yields ``(frame_idx, obj_ids, mask logits [num_objects, 1, H, W])``.

        ``granularity``: decode every object on the frames this call propagates at this g — the official
        ``propagate_in_video(state, gra=g)`` semantics, which may differ from the g of the clicks (the clicked
        frames keep their masks). ``None``: each object at the granularity of its own prompt.
        """
        g = None if granularity is None else validate_granularity(granularity)
        inference_state["propagation_granularity"] = g
        try:
            yield from super().propagate_in_video(
                inference_state,
                start_frame_idx=start_frame_idx,
                max_frame_num_to_track=max_frame_num_to_track,
                reverse=reverse,
            )
        finally:
            inference_state["propagation_granularity"] = None

    def object_granularity(self, inference_state: dict[str, Any], obj_id: int) -> float:
        """The granularity an object is tracked at."""
        try:
            return inference_state["granularity_per_obj"][obj_id]
        except KeyError:
            raise KeyError(
                f"object {obj_id} has no granularity; add it with add_new_points_or_box(..., granularity=g)"
            ) from None

    @staticmethod
    def _check_frame(inference_state: dict[str, Any], frame_idx: int) -> None:
        n = inference_state["num_frames"]
        if not 0 <= int(frame_idx) < n:
            raise IndexError(f"frame index {frame_idx} is outside the video (0 … {n - 1})")

    # ------------------------------------------------------------------ the hook into sam2's tracking loop
    def _run_single_frame_inference(
        self,
        inference_state: dict[str, Any],
        output_dict: dict[str, Any],
        frame_idx: int,
        batch_size: int,
        is_init_cond_frame: bool,
        point_inputs: dict[str, torch.Tensor] | None,
        mask_inputs: torch.Tensor | None,
        reverse: bool,
        run_mem_encoder: bool,
        prev_sam_mask_logits: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], torch.Tensor]:
        # sam2 runs every object separately (batch_size=1) and passes that object's slice of the state as
        # `output_dict`; identify the object from it and decode with its granularity token.
        g: float | None
        if mask_inputs is not None:
            g = None  # official: a mask prompt's frame (and its object pointer) is computed without `gra`
        elif point_inputs is None and inference_state.get("propagation_granularity") is not None:
            g = inference_state["propagation_granularity"]  # a propagated frame of a call given one g
        else:
            g = self.object_granularity(inference_state, self._obj_id_for_output_dict(inference_state, output_dict))
        with self.sam_prompt_encoder.use_granularity(None if g is None else torch.tensor([g])):
            return super()._run_single_frame_inference(
                inference_state,
                output_dict,
                frame_idx,
                batch_size,
                is_init_cond_frame,
                point_inputs,
                mask_inputs,
                reverse,
                run_mem_encoder,
                prev_sam_mask_logits,
            )

    @staticmethod
    def _obj_id_for_output_dict(inference_state: dict[str, Any], output_dict: dict[str, Any]) -> int:
        for obj_idx, per_obj in inference_state["output_dict_per_obj"].items():
            if per_obj is output_dict:
                return inference_state["obj_idx_to_id"][obj_idx]
        raise RuntimeError("UnSAMv2VideoPredictor: frame inference on an output dict of no known object")


class Sam2BaselineVideoPredictor(_FeatureStoreMixin, SAM2VideoPredictor):
    """Stock SAM-2 video predictor on frame folders of any format, for the video benchmark's baselines.

    Build it with :func:`unsamv2.model.build.build_sam2_video_model`. Two controls of the first click:

    * ``single_mask_clicks = True``: a clicked frame is decoded with single-mask output (SAM's token 0) instead of
      the best of 3 by predicted IoU; propagated frames keep sam2's own behaviour.
    * :meth:`add_new_points_choosing`: the 3 candidates of a single click are handed to a caller's function, which
      picks one (e.g. the best against the ground truth); the object is then tracked from that candidate, with
      its mask and its object pointer, exactly as if SAM-2 had predicted it the highest IoU.
    """

    single_mask_clicks: bool = False

    @torch.inference_mode()
    def init_state(
        self,
        video_path: str | os.PathLike[str],
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> dict[str, Any]:
        """sam2's state for a folder of frames of any image format (natural name order), plus ``frame_paths``."""
        return _init_frame_folder_state(self, video_path, offload_video_to_cpu, offload_state_to_cpu,
                                        async_loading_frames)

    def _use_multimask(self, is_init_cond_frame: bool, point_inputs: dict[str, torch.Tensor] | None) -> bool:
        if self.single_mask_clicks and point_inputs is not None:
            return False
        return super()._use_multimask(is_init_cond_frame, point_inputs)

    @torch.inference_mode()
    def add_new_points_choosing(
        self,
        inference_state: dict[str, Any],
        frame_idx: int,
        obj_id: int,
        points: np.ndarray,
        labels: np.ndarray,
        choose: Callable[[np.ndarray], int],
    ) -> tuple[int, list[int], torch.Tensor]:
        """``add_new_points_or_box`` where ``choose(logits)`` picks the candidate; ``logits`` is (3, H, W) at the
        video resolution (what the output of each candidate would be). The clicks must make SAM-2 answer with 3
        candidates (sam2.1: one click on a new object)."""
        height, width = inference_state["video_height"], inference_state["video_width"]
        chosen: list[int] = []

        def pick(module: torch.nn.Module, args: tuple, output: tuple) -> tuple:
            low_res, ious, tokens, object_scores = output
            if low_res.shape[1] < 2:
                return output
            video_res = torch.nn.functional.interpolate(low_res.float(), size=(height, width), mode="bilinear",
                                                        align_corners=False)
            index = int(choose(video_res[0].cpu().numpy()))
            chosen.append(index)
            forced = torch.full_like(ious, -1.0)
            forced[:, index] = 1.0  # sam2 keeps the candidate of the highest predicted IoU
            return low_res, forced, tokens, object_scores

        handle = self.sam_mask_decoder.register_forward_hook(pick)
        try:
            result = self.add_new_points_or_box(inference_state, frame_idx, obj_id, points=points, labels=labels)
        finally:
            handle.remove()
        if not chosen:
            raise ValueError("these clicks do not make SAM-2 answer with 3 candidates (use a single click on a new "
                             "object)")
        return result


def track_object(
    predictor: UnSAMv2VideoPredictor,
    frames_dir: str | os.PathLike[str],
    frame_idx: int,
    points: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    granularity: float,
    mask_threshold: float = EVAL_MASK_THRESHOLD,
    obj_id: int = 1,
) -> tuple[list[Path], dict[int, np.ndarray]]:
    """Click an object on ``frame_idx`` and track it through the whole folder (forward, then backward).

    Returns the frame paths and ``{frame index: bool mask (H, W)}`` for every frame; masks are logits >
    ``mask_threshold`` (-1.0 as the official video notebook).
    """
    g = validate_granularity(granularity)
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    lbl = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(pts) == 0 or len(pts) != len(lbl):
        raise ValueError(
            f"need at least one point and one label per point, got {len(pts)} points, {len(lbl)} labels"
        )
    state = predictor.init_state(str(frames_dir), offload_video_to_cpu=True)
    predictor.add_new_points_or_box(state, frame_idx, obj_id, points=pts, labels=lbl, granularity=g)
    masks: dict[int, np.ndarray] = {}
    for reverse in (False, True):
        if reverse and frame_idx == 0:
            break
        for f_idx, obj_ids, logits in predictor.propagate_in_video(
            state, start_frame_idx=frame_idx, reverse=reverse
        ):
            k = list(obj_ids).index(obj_id)
            masks[f_idx] = (logits[k, 0] > mask_threshold).cpu().numpy()
    return state["frame_paths"], masks
