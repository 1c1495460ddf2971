"""Video: propagate a clicked object at a granularity through a folder of frames (paper Fig. 9; official `sam2_video_predictor.py` and video notebook).

``UnSAMv2VideoPredictor`` is sam2's ``SAM2VideoPredictor`` with the granularity modules attached. Each object
carries its own granularity (given with its clicks); on every frame that object is decoded with that granularity
token — on the clicked frame and on every propagated frame (which has no clicks, only the not-a-point token plus the
granularity token). Memory attention and the memory encoder are SAM-2's, unchanged; the object pointer comes from
the granularity token's output (the decoder returns it in the slot sam2 reads).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sam2.sam2_video_predictor import SAM2VideoPredictor

from unsamv2.core.constants import EVAL_MASK_THRESHOLD
from unsamv2.io.images import list_images, load_image_rgb
from unsamv2.model.granularity import validate_granularity

__all__ = ["UnSAMv2VideoPredictor", "list_frames", "track_object"]

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


class UnSAMv2VideoPredictor(SAM2VideoPredictor):
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

        sam2 itself only reads folders of ``<int>.jpg`` files; this reads every image format through
        :func:`unsamv2.io.images.load_image_rgb` (EXIF orientation, clear errors) and keeps the frame paths in
        ``state["frame_paths"]``. The state layout is sam2 1.1.0's, plus ``granularity_per_obj``.
        """
        if async_loading_frames:
            raise ValueError("async frame loading is not supported by UnSAMv2VideoPredictor")
        frame_paths = list_frames(video_path)
        compute_device = self.device
        first = load_image_rgb(frame_paths[0])
        height, width = first.shape[:2]
        images = torch.zeros(len(frame_paths), 3, self.image_size, self.image_size, dtype=torch.float32)
        mean = torch.tensor(_IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(_IMAGENET_STD)[:, None, None]
        for i, path in enumerate(frame_paths):
            rgb = first if i == 0 else load_image_rgb(path)
            if rgb.shape[:2] != (height, width):
                raise ValueError(
                    f"frame {path} is {rgb.shape[1]}×{rgb.shape[0]}, but the first frame is {width}×{height}"
                )
            # Same preprocessing as sam2's frame loader: square resize with PIL's default filter, /255, normalise.
            resized = np.asarray(
                Image.fromarray(rgb).resize((self.image_size, self.image_size)), dtype=np.float32
            )
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
            # ours: granularity per client-side object id (ids survive sam2's re-indexing in remove_object)
            "granularity_per_obj": {},
            "frame_paths": frame_paths,
        }
        self._get_image_feature(state, frame_idx=0, batch_size=1)
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
        """sam2's ``add_new_mask`` plus the object's granularity for the frames tracked from it."""
        self._check_frame(inference_state, frame_idx)
        inference_state["granularity_per_obj"][obj_id] = validate_granularity(granularity)
        return super().add_new_mask(inference_state, frame_idx, obj_id, mask)

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
        obj_id = self._obj_id_for_output_dict(inference_state, output_dict)
        g = self.object_granularity(inference_state, obj_id)
        with self.sam_prompt_encoder.use_granularity(torch.tensor([g])):
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
