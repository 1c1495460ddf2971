"""The video benchmark as a library call: one model on one video dataset, DAVIS-2017 semi-supervised protocol
adapted to a click and a granularity (method.md §4.3, §5.3; modes in :mod:`unsamv2.evaluate.video_config`).

Per sequence, every object of the first frame gets one positive click at its ground-truth pixel farthest from the
boundary (the interactive protocol's first click, :func:`unsamv2.evaluate.clicker.next_click`); all objects are
tracked together through the sequence, the per-object masks are merged into one label map per frame (where two
masks overlap the smaller object id wins, as sam2's ``vos_inference.py`` writes its PNGs) and scored with J and F
without the first and last frame (:func:`unsamv2.evaluate.video.score_sequence`). UnSAMv2 masks are logits > −1
(official video notebook), SAM-2's logits > 0 (sam2's own VOS inference).

:func:`evaluate_video_to_dir` writes, in ``out_dir``:

* ``masks/<mode>/<sequence>/<frame>.png`` — the predictions as DAVIS palette PNGs, one folder per mode, so that
  ``davis2017-evaluation`` can score ``masks/<mode>`` as a results folder; ``.done.json`` beside the PNGs of a
  finished sequence records the g of each object. A rerun skips finished sequences and scores their PNGs;
* ``per_object.csv`` — :data:`PER_OBJECT_COLUMNS`, one row per (sequence, object, mode);
* ``summary.csv`` — :data:`SUMMARY_COLUMNS`, one row per mode;
* ``figure.png`` — frames of the first sequence with the masks of up to three modes side by side (for UnSAMv2 the
  first three fixed granularities: the paper's Fig. 9 in our benchmark);
* ``failures.json`` (sequences that could not be evaluated, with the reason) and ``run.json``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID, SAM2_VIDEO_MASK_THRESHOLD
from unsamv2.datasets.davis2017 import VideoSequence
from unsamv2.evaluate.clicker import next_click
from unsamv2.evaluate.video import dataset_means, region_similarity, score_sequence
from unsamv2.evaluate.video_config import VideoMode, video_modes_for_model
from unsamv2.io.atomic import atomic_output, atomic_write_json, atomic_write_text
from unsamv2.io.palette_png import read_index_png, write_index_png

__all__ = [
    "PER_OBJECT_COLUMNS",
    "SUMMARY_COLUMNS",
    "Sam2VideoTracker",
    "SequenceTracker",
    "UnSAMv2VideoTracker",
    "VideoEvaluation",
    "build_video_tracker",
    "evaluate_video_dataset",
    "evaluate_video_to_dir",
    "first_click",
    "merge_object_masks",
    "plot_video_figure",
    "read_video_summary",
    "score_results_dir",
]

log = logging.getLogger(__name__)

PER_OBJECT_COLUMNS: tuple[str, ...] = (
    "sequence", "object", "mode", "g", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "granularity_mode", "jf_mean", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall",
    "f_decay", "n_objects",
)
_DONE = ".done.json"


# ------------------------------------------------------------------------------------------------ prompts, masks


def first_click(gt: np.ndarray) -> tuple[int, int] | None:
    """``(x, y)`` of the ground-truth pixel farthest from the mask boundary (first in row-major order on ties),
    or None for an empty mask."""
    gt = np.asarray(gt, bool)
    if not gt.any():
        return None
    y, x, _ = next_click(gt, np.zeros_like(gt), np.zeros_like(gt))
    return x, y


def merge_object_masks(masks: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Per-object bool masks → one uint8 label map; on overlaps the smaller object id wins (sam2 ``vos_inference``)."""
    labels = np.zeros(shape, np.uint8)
    for obj in sorted(masks, reverse=True):
        labels[masks[obj]] = obj
    return labels


# ------------------------------------------------------------------------------------------------ trackers


class SequenceTracker(Protocol):
    """What the benchmark needs from a model: track the objects of one sequence in one mode."""

    name: str

    def track(self, sequence: VideoSequence, mode: VideoMode, first_masks: Mapping[int, np.ndarray],
              ) -> tuple[list[np.ndarray], dict[int, float | None]]:
        """Return one label map per frame and the g each object was tracked at (None without granularity)."""
        ...


def _collect_masks(frames: Iterable[tuple[int, list[int], Any]], n_frames: int, shape: tuple[int, int],
                   threshold: float) -> list[np.ndarray]:
    per_frame: list[dict[int, np.ndarray]] = [{} for _ in range(n_frames)]
    for frame_idx, obj_ids, logits in frames:
        binary = (logits[:, 0] > threshold).cpu().numpy()
        per_frame[frame_idx] = {int(obj): binary[k] for k, obj in enumerate(obj_ids)}
    return [merge_object_masks(m, shape) for m in per_frame]


class _PredictorTracker:
    """A video predictor, a name, a logit threshold and the inference state of the current sequence."""

    def __init__(self, predictor: Any, name: str, threshold: float) -> None:
        self.predictor = predictor
        self.name = name
        self.threshold = threshold
        self._state: dict[str, Any] | None = None
        self._sequence: str | None = None

    def _state_for(self, sequence: VideoSequence) -> dict[str, Any]:
        # One state per sequence: its frames are loaded once and reused by every mode (reset between modes).
        if self._sequence != sequence.name or self._state is None:
            from unsamv2.model.video import keep_frame_features

            frames_dir = sequence.frame_paths[0].parent
            self._state = self.predictor.init_state(str(frames_dir), offload_video_to_cpu=True)
            if self._state["num_frames"] != sequence.num_frames:
                raise ValueError(f"{frames_dir} holds {self._state['num_frames']} images, but sequence "
                                 f"{sequence.name} has {sequence.num_frames} frames (other images in the folder?)")
            keep_frame_features(self._state)  # every mode of this sequence reuses the frames' encodings
            self._sequence = sequence.name
        else:
            self.predictor.reset_state(self._state)
        return self._state


class UnSAMv2VideoTracker(_PredictorTracker):
    """UnSAMv2 through :class:`unsamv2.model.video.UnSAMv2VideoPredictor` (modes ``fixed:<g>``, the first-frame oracle)."""

    def __init__(self, predictor: Any, name: str = "unsamv2", threshold: float = EVAL_MASK_THRESHOLD,
                 grid: Sequence[float] = GRANULARITY_GRID) -> None:
        super().__init__(predictor, name, threshold)
        self.grid = tuple(grid)

    def oracle_granularities(self, sequence: VideoSequence, clicks: Mapping[int, tuple[int, int]],
                             first_masks: Mapping[int, np.ndarray]) -> dict[int, float]:
        """Per object, the g of the grid whose first-frame mask has the highest J (ties: the smaller g)."""
        best: dict[int, tuple[float, float]] = {}
        for g in self.grid:
            state = self._state_for(sequence)
            logits = None
            for obj, (x, y) in clicks.items():
                _, obj_ids, logits = self.predictor.add_new_points_or_box(
                    state, 0, obj, points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32),
                    granularity=g)
            if logits is None:
                continue
            binary = (logits[:, 0] > self.threshold).cpu().numpy()
            for k, obj in enumerate(obj_ids):
                j = region_similarity(first_masks[obj], binary[k])
                if obj not in best or j > best[obj][1]:
                    best[obj] = (g, j)
        return {obj: g for obj, (g, _) in best.items()}

    def track(self, sequence: VideoSequence, mode: VideoMode, first_masks: Mapping[int, np.ndarray],
              ) -> tuple[list[np.ndarray], dict[int, float | None]]:
        clicks = {obj: c for obj, m in first_masks.items() if (c := first_click(m)) is not None}
        if mode.kind == "first_frame_oracle":
            granularity: dict[int, float] = self.oracle_granularities(sequence, clicks, first_masks)
        elif mode.kind == "fixed" and mode.value is not None:
            granularity = {obj: mode.value for obj in clicks}
        else:
            raise ValueError(f"UnSAMv2 cannot run video mode {mode.label!r}")
        state = self._state_for(sequence)
        for obj, (x, y) in clicks.items():
            self.predictor.add_new_points_or_box(state, 0, obj, points=np.array([[x, y]], np.float32),
                                                 labels=np.array([1], np.int32), granularity=granularity[obj])
        shape = (state["video_height"], state["video_width"])
        if not clicks:
            return [np.zeros(shape, np.uint8) for _ in range(sequence.num_frames)], {}
        labels = _collect_masks(self.predictor.propagate_in_video(state, start_frame_idx=0),
                                sequence.num_frames, shape, self.threshold)
        return labels, {obj: granularity.get(obj) for obj in first_masks}


class Sam2VideoTracker(_PredictorTracker):
    """Stock SAM-2 through :class:`unsamv2.model.video.Sam2BaselineVideoPredictor` (single mask, best of 3 on the
    first frame, ground-truth mask)."""

    def __init__(self, predictor: Any, name: str = "sam2", threshold: float = SAM2_VIDEO_MASK_THRESHOLD) -> None:
        super().__init__(predictor, name, threshold)

    def track(self, sequence: VideoSequence, mode: VideoMode, first_masks: Mapping[int, np.ndarray],
              ) -> tuple[list[np.ndarray], dict[int, float | None]]:
        state = self._state_for(sequence)
        added = False
        self.predictor.single_mask_clicks = mode.kind == "single_mask"
        try:
            for obj, gt in first_masks.items():
                if mode.kind == "gt_mask":
                    if gt.any():
                        self.predictor.add_new_mask(state, 0, obj, gt)
                        added = True
                    continue
                click = first_click(gt)
                if click is None:
                    continue
                points = np.array([click], np.float32)
                labels = np.array([1], np.int32)
                if mode.kind == "single_mask":
                    self.predictor.add_new_points_or_box(state, 0, obj, points=points, labels=labels)
                elif mode.kind == "best_of_3_first_frame":
                    self.predictor.add_new_points_choosing(state, 0, obj, points, labels,
                                                           _best_candidate(gt, self.threshold))
                else:
                    raise ValueError(f"SAM-2 cannot run video mode {mode.label!r}")
                added = True
            shape = (state["video_height"], state["video_width"])
            if not added:
                return [np.zeros(shape, np.uint8) for _ in range(sequence.num_frames)], {}
            labels_per_frame = _collect_masks(self.predictor.propagate_in_video(state, start_frame_idx=0),
                                              sequence.num_frames, shape, self.threshold)
        finally:
            self.predictor.single_mask_clicks = False
        return labels_per_frame, {obj: None for obj in first_masks}


def _best_candidate(gt: np.ndarray, threshold: float) -> Callable[[np.ndarray], int]:
    def choose(candidates: np.ndarray) -> int:
        scores = [region_similarity(gt, c > threshold) for c in candidates]
        return int(np.argmax(scores))  # the first of equal scores

    return choose


def build_video_tracker(kind: str, checkpoint: str | Path | None, size: str, device: str | None,
                        image_size: int = 1024, name: str | None = None) -> SequenceTracker:
    """The tracker of a model kind (``unsamv2`` or ``sam2``); ``checkpoint=None`` = random weights (labelled)."""
    from unsamv2.core.device import resolve_device
    from unsamv2.model.build import build_sam2_video_model, build_unsamv2, normalize_model_size

    device = resolve_device(device or "auto")
    label = name or (kind if checkpoint else f"{kind}-random-init")
    if checkpoint is None:
        log.warning("no --checkpoint: %s runs with RANDOM weights; its numbers mean nothing (label %r)", kind, label)
    if kind == "unsamv2":
        model = build_unsamv2(size, checkpoint, device=device, image_size=image_size, video=True,
                              merge_lora_weights=True)
        return UnSAMv2VideoTracker(model, name=label)
    if kind == "sam2":
        model = build_sam2_video_model(normalize_model_size(size), checkpoint, image_size=image_size,
                                       device=device)
        return Sam2VideoTracker(model, name=label)
    raise ValueError(f"unknown --model {kind!r}; expected unsamv2 or sam2")


# ------------------------------------------------------------------------------------------------ one dataset


@dataclass
class VideoEvaluation:
    """The rows of one (model, dataset) run."""

    model: str
    dataset: str
    modes: list[str]
    per_object: list[dict[str, Any]]
    failures: list[dict[str, str]]
    n_sequences: int
    figure_sequence: str | None
    elapsed_s: float

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for mode in self.modes:
            objects = [r for r in self.per_object if r["mode"] == mode]
            if not objects:
                continue
            rows.append({"model": self.model, "dataset": self.dataset, "granularity_mode": mode,
                         **dataset_means(objects), "n_objects": len(objects)})
        return rows


def _read_done(folder: Path, n_frames: int) -> dict[int, float | None] | None:
    marker = folder / _DONE
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
        granularity = {int(k): (None if v is None else float(v)) for k, v in data["g"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if data.get("n_frames") != n_frames:
        return None
    return granularity


def evaluate_video_dataset(tracker: SequenceTracker, sequences: Iterable[VideoSequence], modes: Sequence[VideoMode],
                           dataset: str, masks_dir: Path, limit: int | None = None, progress: bool = True,
                           ) -> VideoEvaluation:
    """Track and score every sequence in every mode; predictions go to ``masks_dir/<mode>/<sequence>/``.

    A sequence that fails (unreadable files, a model error on it) is listed in ``failures`` and the rest go on.
    Sequences whose PNGs are complete (``.done.json``) are not tracked again but scored from their PNGs.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    figure_sequence = None
    n = 0
    items = list(sequences)
    if limit is not None:
        items = items[:limit]
    for sequence in tqdm(items, desc=f"{tracker.name} {dataset}", disable=not progress):
        n += 1
        if sequence.error:
            failures.append({"sequence": sequence.name, "error": sequence.error})
            log.error("sequence %s: %s", sequence.name, sequence.error)
            continue
        try:
            gt = sequence.all_labels()
            first_masks = {obj: gt[0] == obj for obj in sequence.object_ids}
            seq_rows = []
            for mode in modes:
                out = masks_dir / mode.label / sequence.name
                granularity = _read_done(out, sequence.num_frames)
                if granularity is None:
                    labels, granularity = tracker.track(sequence, mode, first_masks)
                    out.mkdir(parents=True, exist_ok=True)
                    for path, frame in zip(sequence.annotation_paths, labels, strict=True):
                        write_index_png(out / path.name, frame)
                    atomic_write_json(out / _DONE, {"n_frames": sequence.num_frames,
                                                    "g": {str(k): v for k, v in granularity.items()}})
                else:
                    labels = [read_index_png(out / p.name) for p in sequence.annotation_paths]
                scores = score_sequence(gt, labels, sequence.object_ids)
                for obj in sequence.object_ids:
                    g = granularity.get(obj)
                    seq_rows.append({"sequence": sequence.name, "object": obj, "mode": mode.label,
                                     "g": math.nan if g is None else g, **scores[obj]})
        except (OSError, ValueError, RuntimeError) as exc:
            failures.append({"sequence": sequence.name, "error": f"{type(exc).__name__}: {exc}"})
            log.error("sequence %s failed: %s", sequence.name, exc)
            continue
        rows.extend(seq_rows)
        figure_sequence = figure_sequence or sequence.name
    return VideoEvaluation(tracker.name, dataset, [m.label for m in modes], rows, failures, n, figure_sequence,
                           time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ files


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(c, "")) for c in columns])
    return atomic_write_text(path, buffer.getvalue())


def read_video_summary(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``summary.csv`` with the numbers as floats (``n_objects`` as int; empty → NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, Any] = dict(row)
            for key in SUMMARY_COLUMNS[3:-1]:
                parsed[key] = float(row[key]) if row[key] else math.nan
            parsed["n_objects"] = int(row["n_objects"])
            rows.append(parsed)
    return rows


def score_results_dir(sequences: Iterable[VideoSequence], results_dir: str | Path) -> dict[str, float]:
    """Score a DAVIS-format results folder (``<sequence>/<frame>.png``) against the sequences' ground truth,
    as ``davis2017-evaluation`` does: the dataset means of :func:`unsamv2.evaluate.video.dataset_means`."""
    rows = []
    for sequence in sequences:
        gt = sequence.all_labels()
        pred = [read_index_png(Path(results_dir) / sequence.name / p.name) for p in sequence.annotation_paths]
        rows.extend(score_sequence(gt, pred, sequence.object_ids).values())
    return dataset_means(rows)


def _overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from unsamv2.io.palette_png import davis_palette

    colours = np.asarray(davis_palette(), np.float32).reshape(256, 3)
    out = frame.astype(np.float32)
    inside = labels > 0
    out[inside] = 0.45 * out[inside] + 0.55 * colours[labels[inside]]
    return np.clip(out, 0, 255).astype(np.uint8)


def plot_video_figure(sequence: VideoSequence, masks_dir: Path, modes: Sequence[str], path: str | Path,
                      n_frames: int = 4, title: str = "") -> Path:
    """Frames of ``sequence`` (rows, evenly spaced) × the masks of ``modes`` (columns) over the frames — Fig. 9."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    from unsamv2.io.images import load_image_rgb

    indices = sorted({round(i) for i in np.linspace(0, sequence.num_frames - 1, min(n_frames, sequence.num_frames))})
    columns = ["input", *modes]
    fig, axes = plt.subplots(len(indices), len(columns), figsize=(2.2 * len(columns), 1.9 * len(indices)),
                             squeeze=False)
    try:
        for r, t in enumerate(indices):
            frame = load_image_rgb(sequence.frame_paths[t])
            for c, column in enumerate(columns):
                ax = axes[r][c]
                if column == "input":
                    ax.imshow(frame)
                else:
                    labels = read_index_png(masks_dir / column / sequence.name / sequence.annotation_paths[t].name)
                    ax.imshow(_overlay(frame, labels))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(column, fontsize="small")
                if c == 0:
                    ax.set_ylabel(f"frame {t}", fontsize="small")
        fig.suptitle(title or sequence.name, fontsize="medium")
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def _figure_modes(modes: Sequence[VideoMode]) -> list[str]:
    fixed = [m.label for m in modes if m.kind == "fixed"]
    if fixed:
        return fixed[:3]  # three granularities side by side, as Fig. 9
    return [m.label for m in modes][:3]


def evaluate_video_to_dir(
    *,
    dataset: str,
    root: str | Path,
    model_kind: str,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    size: str = "small",
    modes: Sequence[str] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    device: str | None = None,
    image_size: int = 1024,
    model_label: str | None = None,
    progress: bool = True,
    tracker: SequenceTracker | None = None,
) -> int:
    """Evaluate one model on one video dataset and write the run's files into ``out_dir`` (module docstring).

    ``modes``: None or empty = the config's defaults (``VideoConfig.unsamv2_modes`` / ``sam2_modes``); a mode of the
    other model raises ``ValueError``. ``tracker``: an already built tracker (tests); otherwise one is built from
    ``model_kind``, ``checkpoint``, ``size``, ``device``, ``image_size`` and ``model_label``.
    Returns 1 if every sequence failed, else 0.
    """
    from unsamv2.datasets.registry import effective_options, get_dataset, load_dataset

    spec = get_dataset(dataset)
    if spec.task != "video":
        raise ValueError(f"{spec.name} is not a video dataset; video datasets: davis2017, synthetic_video")
    parsed = video_modes_for_model(model_kind, modes)
    options = effective_options(spec.name, **dict(dataset_options or {}))
    out = Path(out_dir)
    sequences = list(load_dataset(spec.name, root, **options))
    if tracker is None:
        tracker = build_video_tracker(model_kind, checkpoint, size, device, image_size, model_label)
    result = evaluate_video_dataset(tracker, sequences, parsed, spec.name, out / "masks", limit=limit,
                                    progress=progress)
    _write_csv(out / "per_object.csv", PER_OBJECT_COLUMNS, result.per_object)
    rows = result.summary_rows()
    _write_csv(out / "summary.csv", SUMMARY_COLUMNS, rows)
    figure = next((s for s in sequences if s.name == result.figure_sequence), None)
    if figure is not None:
        plot_video_figure(figure, out / "masks", _figure_modes(parsed), out / "figure.png",
                          title=f"{result.model} on {spec.display_name}: {figure.name}")
    else:
        _empty_figure(out / "figure.png", f"{spec.display_name}: no sequence evaluated")
    atomic_write_json(out / "failures.json", result.failures, indent=1)
    atomic_write_json(out / "run.json", {
        "model": result.model, "model_kind": model_kind,
        "checkpoint": None if checkpoint is None else str(checkpoint), "size": size, "image_size": image_size,
        "dataset": spec.name, "root": str(root), "dataset_options": options, "modes": result.modes,
        "mask_threshold": tracker.threshold if hasattr(tracker, "threshold") else None,
        "limit": limit, "n_sequences": result.n_sequences, "n_failures": len(result.failures),
        "figure_sequence": result.figure_sequence, "elapsed_s": round(result.elapsed_s, 3),
        "protocol": "one click per object on frame 0 at the GT pixel farthest from the boundary; first and last "
                    "frame not scored; first_frame_oracle = g of 0.1…1.0 with the best first-frame J",
    }, indent=1)
    for row in rows:
        log.info("%s %s %s: J&F %.3f J %.3f F %.3f (%d objects)", row["model"], row["dataset"],
                 row["granularity_mode"], row["jf_mean"], row["j_mean"], row["f_mean"], row["n_objects"])
    if result.failures:
        log.error("%d sequence(s) failed; see %s", len(result.failures), out / "failures.json")
    if result.n_sequences and len(result.failures) == result.n_sequences:
        return 1
    return 0


def _empty_figure(path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2))
    try:
        ax.axis("off")
        ax.set_title(title)
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
