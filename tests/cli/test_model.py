"""`unsamv2 segment`, `segment-all`, `track`, `random-checkpoint`: help, outputs on disk, and error handling."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unsamv2.cli import build_parser, main
from unsamv2.core.constants import EVAL_MASK_THRESHOLD, GRANULARITY_GRID
from unsamv2.io.masks import decode_rle
from unsamv2.model.checkpoint import read_checkpoint
from unsamv2.model.predictor import UnSAMv2ImagePredictor
from unsamv2.model.random_checkpoint import random_state_dict

FAST = ["--image-size", "256", "--device", "cpu"]


run = main


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(photo).save(path)
    return path


@pytest.mark.parametrize("command", ["segment", "segment-all", "track"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--granularity" in out and "--checkpoint" in out and "example:" in out


def test_segment_writes_mask_pngs_and_a_summary(
    photo_file: Path, photo: np.ndarray, checkpoint_factory: Callable[..., Path], tmp_path: Path, tiny_model
) -> None:
    ckpt = checkpoint_factory("unsamv2")
    out = tmp_path / "masks"
    rc = run(
        [
            "segment",
            str(photo_file),
            "--point",
            "60,50",
            "--negative",
            "5,5",
            "--granularity",
            "0.3",
            "--granularity",
            "0.8",
            "--checkpoint",
            str(ckpt),
            "--out-dir",
            str(out),
            "--strip",
            str(tmp_path / "s.png"),
            *FAST,
        ]
    )
    assert rc == 0
    summary = json.loads((out / "astronaut_masks.json").read_text())
    assert [m["granularity"] for m in summary["masks"]] == [0.3, 0.8]
    assert summary["labels"] == [1, 0] and summary["mask_threshold"] == -1.0
    # The PNGs are exactly the library's masks (same model, M2M, threshold -1).
    p = UnSAMv2ImagePredictor(tiny_model, mask_threshold=EVAL_MASK_THRESHOLD)
    p.set_image(photo)
    expected, _, _ = p.predict_granularities(
        np.array([[60.0, 50.0], [5.0, 5.0]]), np.array([1, 0]), [0.3, 0.8], m2m=True
    )
    for entry, exp in zip(summary["masks"], expected, strict=True):
        png = np.asarray(Image.open(out / entry["file"]))
        assert png.shape == photo.shape[:2] and set(np.unique(png)) <= {0, 255}
        assert np.mean((png > 0) == exp) > 0.999
        assert entry["area"] == int((png > 0).sum())
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    assert strip.shape[2] == 3 and strip.shape[0] == 256 + 28


def test_segment_rle_output(
    photo_file: Path, checkpoint_factory: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "masks.json"
    rc = run(
        [
            "segment",
            str(photo_file),
            "--point",
            "60,50",
            "--granularity",
            "0.5",
            "--checkpoint",
            str(checkpoint_factory("unsamv2")),
            "--out",
            str(out),
            "--no-m2m",
            *FAST,
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    (entry,) = data["masks"]
    mask = decode_rle(entry["segmentation"])
    assert mask.shape == (data["height"], data["width"]) and int(mask.sum()) == entry["area"]


def test_segment_all_and_pooled(
    photo_file: Path, checkpoint_factory: Callable[..., Path], tmp_path: Path
) -> None:
    common = [
        "--checkpoint",
        str(checkpoint_factory("unsamv2")),
        "--points-per-side",
        "2",
        "--quiet",
        "--pred-iou-thresh",
        "0",
        "--stability-thresh",
        "0",
        *FAST,
    ]
    out = tmp_path / "all.json"
    assert (
        run(
            [
                "segment-all",
                str(photo_file),
                "--granularity",
                "0.4",
                "--out",
                str(out),
                "--overlay",
                str(tmp_path / "o.png"),
                *common,
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["granularities"] == [0.4] and data["settings"]["points_per_side"] == 2
    assert data["annotations"] and all(a["granularity"] == 0.4 for a in data["annotations"])
    assert (tmp_path / "o.png").is_file()
    out2 = tmp_path / "pooled.json"
    assert run(["segment-all", str(photo_file), "--pooled", "--out", str(out2), *common]) == 0
    pooled = json.loads(out2.read_text())
    assert pooled["granularities"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] == list(GRANULARITY_GRID)


def test_track_writes_one_mask_per_frame(
    photo: np.ndarray, checkpoint_factory: Callable[..., Path], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(photo, 5 * i, axis=1)).save(frames / f"{i:05d}.jpg")
    out = tmp_path / "tracked"
    rc = run(
        [
            "track",
            str(frames),
            "--frame",
            "1",
            "--point",
            "60,50",
            "--granularity",
            "0.33",
            "--checkpoint",
            str(checkpoint_factory("unsamv2")),
            "--out-dir",
            str(out),
            *FAST,
        ]
    )
    assert rc == 0
    summary = json.loads((out / "track.json").read_text())
    assert [f["mask"] for f in summary["frames"]] == ["00000.png", "00001.png", "00002.png"]
    for f in summary["frames"]:
        assert np.asarray(Image.open(out / f["mask"])).shape == photo.shape[:2]


@pytest.mark.parametrize(
    "argv",
    [
        ["--point", "60;50", "--granularity", "0.5"],
        ["--point", "60,50", "--granularity", "1.5"],
        ["--point", "60,50", "--granularity", "nan"],
        ["--point", "60,50"],
    ],
)
def test_malformed_arguments_exit_with_2(argv: list[str], photo_file: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(
            ["segment", str(photo_file), *argv, "--checkpoint", "x.pt", "--out-dir", str(tmp_path)]
        )
    assert exit_info.value.code == 2


def test_user_errors_are_one_line_and_exit_2(
    photo_file: Path,
    checkpoint_factory: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = str(checkpoint_factory("unsamv2"))
    assert (
        run(
            [
                "segment",
                str(photo_file),
                "--point",
                "500,50",
                "--granularity",
                "0.5",
                "--checkpoint",
                ckpt,
                "--out-dir",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
        == 2
    )
    assert "lies outside the 160×192 image" in capsys.readouterr().err
    assert (
        run(
            [
                "segment",
                str(photo_file),
                "--point",
                "60,50",
                "--granularity",
                "0.5",
                "--checkpoint",
                str(tmp_path / "missing.pt"),
                "--out-dir",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert (
        run(
            [
                "segment",
                str(bad),
                "--point",
                "1,1",
                "--granularity",
                "0.5",
                "--checkpoint",
                ckpt,
                "--out-dir",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
        == 2
    )
    assert "cannot read image" in capsys.readouterr().err
    assert (
        run(["segment-all", str(photo_file), "--checkpoint", ckpt, "--out", str(tmp_path / "a.json"), *FAST])
        == 2
    )
    assert "--granularity G" in capsys.readouterr().err


def test_top_level_cli_dispatches_to_the_model_commands(
    photo_file: Path, checkpoint_factory: Callable[..., Path], tmp_path: Path
) -> None:
    rc = main(
        [
            "segment",
            str(photo_file),
            "--point",
            "60,50",
            "--granularity",
            "0.5",
            "--checkpoint",
            str(checkpoint_factory("unsamv2")),
            "--out-dir",
            str(tmp_path / "m"),
            *FAST,
        ]
    )
    assert rc == 0 and (tmp_path / "m" / "astronaut_g0.5.png").is_file()


def test_stock_sam21_checkpoint_works_with_a_warning(
    photo_file: Path,
    checkpoint_factory: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rc = run(
        [
            "segment",
            str(photo_file),
            "--point",
            "60,50",
            "--granularity",
            "0.5",
            "--checkpoint",
            str(checkpoint_factory("sam2")),
            "--out-dir",
            str(tmp_path / "m"),
            *FAST,
        ]
    )
    assert rc == 0
    assert "stock SAM-2.1 checkpoint" in caplog.text




def test_random_checkpoint_command_writes_the_released_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["random-checkpoint", "--model-size", "tiny", "--format", "sam2", "--out", str(tmp_path / "c.pt")]
    assert main(argv) == 0
    assert "RANDOM weights" in capsys.readouterr().out
    state = read_checkpoint(tmp_path / "c.pt")
    expected = random_state_dict("tiny", "sam2", seed=0)
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["random-checkpoint", "--model-size", "gigantic", "--out", "d.pt"])
    assert exit_info.value.code == 2
