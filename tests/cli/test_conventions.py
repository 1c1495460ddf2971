"""The conventions every `unsamv2` command shares: flag names, `--quiet`, the exit-code policy, no torch at parse."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from unsamv2.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


COMMANDS = _subparsers()


def test_every_stage_registers_its_commands() -> None:
    assert set(COMMANDS) == {
        "demo-images", "select-images", "fetch-sa1b", "extract-images", "download", "download-backbone",
        "download-sam2", "prepare-dataset", "synthetic",
        "discover", "score", "report-pseudo-labels", "pseudo-label-recall",
        "train",
        "evaluate-interactive", "average-interactive", "plot-interactive", "interactive-levels",
        "segment", "segment-all", "track", "random-checkpoint",
        "app",
        "synthetic-video", "evaluate-video",
        "prepare-whole-image", "whole-image-shard", "score-whole-image", "evaluate-whole-image",
        "average-whole-image",
        "report-tables", "report-strips", "report-whole-image",
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flag_conventions(command: str) -> None:
    flags = _flags(COMMANDS[command])
    # One name per idea: outputs are --out / --out-dir, the model size is --model-size, progress is --quiet.
    retired = {"--dest-dir", "--done", "--out-manifest", "--size", "--no-progress", "--labels-dir", "--raw-dir",
               "--folder", "--dest"}
    assert not flags & retired, f"{command}: {sorted(flags & retired)}"
    assert "--quiet" in flags and "--threads" in flags
    # `app` serves a page; what it writes lives in a temporary folder, removed when it stops.
    assert flags & {"--out", "--out-dir"} or command == "app", f"{command} has no output flag"
    positionals = [a.dest for a in COMMANDS[command]._actions if not a.option_strings and a.dest != "help"]
    assert not {"out", "out_dir", "dest", "dest_dir"} & set(positionals), f"{command}: output as positional"


def test_the_same_folder_has_the_same_flag() -> None:
    uses = {c: _flags(p) for c, p in COMMANDS.items()}
    assert {c for c, f in uses.items() if "--pseudo-labels" in f} == {"train", "report-pseudo-labels",
                                                                      "pseudo-label-recall", "report-strips"}
    assert {c for c, f in uses.items() if "--image-list" in f} == {
        "discover", "report-pseudo-labels", "report-tables", "report-strips", "report-whole-image"}
    assert {c for c, f in uses.items() if "--model-size" in f} == {
        "download-sam2", "evaluate-interactive", "segment", "segment-all", "track", "random-checkpoint",
        "app", "evaluate-video", "whole-image-shard", "score-whole-image", "evaluate-whole-image",
        "report-strips", "report-whole-image"}


def test_building_the_parser_imports_no_torch() -> None:
    code = "import sys; from unsamv2.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_module_entry_point_runs_the_same_main() -> None:
    proc = subprocess.run([sys.executable, "-m", "unsamv2.cli", "score", "--help"], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--raw-labels" in proc.stdout


def test_user_error_is_one_line_naming_the_file_and_exits_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_manifest.tsv"
    rc = main(["score", "--manifest", str(missing), "--raw-labels", str(tmp_path), "--out-dir", str(tmp_path),
               "--out", str(tmp_path / "m.tsv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(missing) in err[0] and err[0].startswith("unsamv2 score: error:")


def test_bad_config_value_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--pseudo-labels", str(tmp_path), "--images", str(tmp_path), "--out-dir", str(tmp_path),
               "--settings", '{"epochs": 0}'])
    assert rc == 2 and "train.epochs" in capsys.readouterr().err


def test_a_bug_is_not_reported_as_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyError (or any exception outside the user-error set) keeps its traceback."""
    from unsamv2 import cli

    def broken(args: argparse.Namespace) -> int:
        raise KeyError("internal")

    def parser_with_broken_score() -> argparse.ArgumentParser:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["score"].set_defaults(func=broken)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_broken_score)
    with pytest.raises(KeyError, match="internal"):
        cli.main(["score", "--manifest", "m", "--raw-labels", "r", "--out-dir", "o", "--out", "x"])
