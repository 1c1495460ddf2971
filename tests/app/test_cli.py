"""`unsamv2 app`: flags and defaults, and the one-line user errors before anything is served."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from unsamv2.app.limits import UploadLimits
from unsamv2.cli import build_parser, main


def test_help_names_the_command_and_binds_locally(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["app", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--max-frames" in out and "example: unsamv2 app --checkpoint" in out


def test_defaults() -> None:
    args = build_parser().parse_args(["app", "--checkpoint", "x.pt"])
    assert (args.host, args.port, args.device, args.image_size, args.m2m, args.mask_threshold) == (
        "127.0.0.1", 7860, "auto", 1024, True, -1.0)
    assert UploadLimits(args.max_upload_mb, args.max_image_pixels, args.max_frames) == UploadLimits()


def test_missing_checkpoint_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"unsamv2 app: error: checkpoint {tmp_path / 'none.pt'} does not exist"


def test_missing_gradio_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.strip() == ("unsamv2 app: error: the app needs Gradio, which is not installed: "
                                               "pip install 'unsamv2[app]'")


@pytest.mark.parametrize("flags", [["--port", "70000"], ["--port", "0"], ["--max-frames", "0"],
                                   ["--max-upload-mb", "-1"]])
def test_bad_flags_are_usage_errors(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["app", "--checkpoint", "x.pt", *flags])
    assert info.value.code == 2
    assert "unsamv2 app: error: argument" in capsys.readouterr().err
