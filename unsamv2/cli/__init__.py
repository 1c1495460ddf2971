"""`unsamv2 <command>`: the command line every Snakemake rule calls, and the user's.

One module per stage registers its commands (``data``, ``discover``, ``train``, ``evaluate``, ``model``); the
command bodies parse flags and call library functions, which do the work. This module builds the parser and owns
the conventions every command shares:

* flags: an output is ``--out`` (a file) or ``--out-dir`` (a folder); the SAM-2.1 size is ``--model-size``;
  ``--quiet`` turns progress bars off; ``--threads N`` caps torch's CPU threads (the rules pass their ``threads``);
* exit codes: 0 success; 1 the work ran but failed for every item (e.g. all images of a shard); 2 a user error —
  bad arguments, bad config values, a missing or unreadable file — reported as one line naming the file or key.
  Anything else is a bug and keeps its traceback.

Building the parser imports no torch: a command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from unsamv2.cli import app, data, discover, evaluate, model, report, train, video
from unsamv2.download import DownloadError
from unsamv2.io.disk_space import InsufficientDiskSpace

__all__ = ["USER_ERRORS", "build_parser", "main"]

log = logging.getLogger("unsamv2")

#: Exceptions that mean "the input is wrong", not "the program is wrong": bad values and config keys
#: (ValueError, which includes unreadable images and mismatching checkpoints), files that are missing or
#: unreadable (user-supplied files included), and downloads that failed or did not verify.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, PermissionError, DownloadError,
                                                InsufficientDiskSpace)

_STAGES = (data, discover, train, evaluate, model, report, app, video)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars (logs only)")
    common.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's own choice, one per core)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unsamv2", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    for stage in _STAGES:
        stage.register(sub, common)
    return parser


class _DropSam2Chatter(logging.Filter):
    """sam2's image predictor logs every image encoding at INFO on the root logger; keep the output readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.module == "sam2_image_predictor")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    root = logging.getLogger()
    if not any(isinstance(f, _DropSam2Chatter) for f in root.filters):
        root.addFilter(_DropSam2Chatter())
    # sam2's transforms use torch.jit.script, deprecated in recent torch: harmless, but printed on every run.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.threads is not None:
        from unsamv2.core.device import set_cpu_threads

        set_cpu_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"unsamv2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
