"""Faults and bad inputs, as users meet them.

* Kills (marked ``faults``, minutes): the whole Snakemake process group killed with SIGKILL at random moments
  during discovery, training and evaluation, as a preempted or OOM-killed cluster job is, each time followed by
  exactly the README's recovery steps (`snakemake --unlock <same arguments>`, then the same command). The outputs
  must parse and equal those of an uninterrupted run of the same toy configuration. Run with
  `python -m pytest -m faults tests/test_faults.py` (the default test command leaves it out; .ci/run runs it after
  the suite); the figures (kills per phase, resumes, differences) are printed with `-s`.
* Bad inputs (the default suite, seconds): a corrupt, truncated or foreign checkpoint, one of another model size,
  a benchmark folder missing its files, an empty image folder, an id list naming a missing image. Each is one line
  `unsamv2 <command>: error: …` naming the file, exit code 2, and no output written. (Bad images, config typos and
  failed downloads have their own tests: tests/io/test_images.py, tests/test_workflow.py, tests/test_download.py.)
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.toy_workflow import assert_every_output_parses, differences, toy_workdir

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: The subcommand each phase's jobs run: a kill counts for a phase when one of its processes was alive.
PHASES = {"discovery": "discover", "training": "train", "evaluation": "evaluate-interactive"}
KILLS_PER_PHASE = 5
#: The random delay between a phase's first process and the kill, as a fraction of that phase's shortest job in the
#: uninterrupted run (Snakemake's benchmark files), so that kills land inside a job however loaded the machine is:
#: in its start-up, its computation or its writes. At most 0.4: the load of a shared machine changes between the
#: two runs, and an evaluation job that ends before its kill cannot be interrupted again (it was measured: with
#: up to 0.8 a run once got only 2 of its 5 evaluation kills).
DELAY_FRACTION = (0.05, 0.4)
STALE_LOCK = "Directory cannot be locked"


#: The user's command; the recovery steps repeat it with --unlock, then unchanged.
COMMAND = ["--cores", "1", "--configfile", "t.yaml"]


def _run(work: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _group_processes(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the parenthesised command name: state ppid pgrp ...
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue  # exited while we looked
        found.append((int(entry.name), cmdline))
    return found


def _phases_running(pgid: int) -> set[str]:
    running = set()
    for _, cmdline in _group_processes(pgid):
        for phase, sub in PHASES.items():
            if re.search(rf"unsamv2 {re.escape(sub)}( |$)", cmdline):
                running.add(phase)
    return running


def _job_seconds(results: Path) -> dict[str, float]:
    """Wall time of each phase's shortest job in a finished run, from its benchmark files (first column: s)."""
    bench = results / "benchmarks"
    files = {"discovery": sorted((bench / "discover").glob("*.tsv")), "training": [bench / "train.tsv"],
             "evaluation": sorted((bench / "evaluate").glob("unsamv2_*.tsv"))}
    seconds = {}
    for phase, paths in files.items():
        assert paths and all(p.is_file() for p in paths), f"no benchmark files for {phase} in {bench}"
        seconds[phase] = min(float(p.read_text().splitlines()[1].split("\t")[0]) for p in paths)
    return seconds


def _kill_during(work: Path, wanted: set[str], seconds: dict[str, float], rng: random.Random) -> str | None:
    """Start the command; once a job of a phase in ``wanted`` runs, wait a random delay and SIGKILL the whole
    process group. Returns the phase a job of which was alive at the kill (None: the command ran to its end, or
    the job had just finished)."""
    proc = subprocess.Popen([*SNAKEMAKE, *COMMAND], cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not (running := _phases_running(proc.pid) & wanted):
            if proc.poll() is not None:
                return None
            assert time.monotonic() < deadline, f"no job of {wanted} started within 900 s"
            time.sleep(0.05)
        phase = min(running)
        time.sleep(rng.uniform(*DELAY_FRACTION) * seconds[phase])
        in_phase = phase in _phases_running(proc.pid)
        if proc.poll() is not None:
            return None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        # Nothing of the group may survive (a preempted job's processes all die with it).
        for _ in range(100):
            if not _group_processes(proc.pid):
                break
            time.sleep(0.05)
        assert not _group_processes(proc.pid), _group_processes(proc.pid)
        return phase if in_phase else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def _recover(work: Path, check_stale_lock: bool) -> None:
    """The README's recovery: `snakemake --unlock <same arguments>`; the caller then runs the same command."""
    if check_stale_lock:
        # Without --unlock the same command refuses to start: the killed Snakemake left its lock behind.
        again = _run(work, *COMMAND)
        assert again.returncode != 0 and STALE_LOCK in again.stdout + again.stderr, again.stderr[-3000:]
    unlock = _run(work, "--unlock", *COMMAND)
    assert unlock.returncode == 0, unlock.stderr[-3000:]


@pytest.mark.faults
@pytest.mark.timeout(2400)
def test_sigkill_of_the_process_group_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("UNSAMV2_FAULT_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    # Both copies first: workflow/ and config/ must be the same for the two runs.
    ref = toy_workdir(tmp_path / "uninterrupted")
    work = toy_workdir(tmp_path / "interrupted")
    t0 = time.monotonic()
    done = _run(ref, *COMMAND)
    assert done.returncode == 0, done.stderr[-4000:]
    uninterrupted_s = time.monotonic() - t0
    seconds = _job_seconds(ref / "results" / "t")

    kills = dict.fromkeys(PHASES, 0)
    resumes = 0
    t0 = time.monotonic()
    for _ in range(6 * KILLS_PER_PHASE):
        wanted = {p for p, k in kills.items() if k < KILLS_PER_PHASE}
        if not wanted:
            break
        phase = _kill_during(work, wanted, seconds, rng)
        if phase is None:
            break  # the command ran to its end: nothing is left to interrupt
        if phase:
            kills[phase] += 1
        _recover(work, check_stale_lock=resumes == 0)
        resumes += 1
    final = _run(work, *COMMAND)  # the same command, once more, to the end
    assert final.returncode == 0, final.stderr[-4000:]
    interrupted_s = time.monotonic() - t0

    results = work / "results" / "t"
    n_outputs = assert_every_output_parses(results)
    diffs = differences(ref / "results" / "t", results)
    print(f"\nfault figures (seed {seed}): kills {kills}, resumes {resumes}, outputs parsed {n_outputs}, "
          f"differences {len(diffs)}; uninterrupted {uninterrupted_s:.0f} s (shortest jobs: "
          f"{', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}), interrupted {interrupted_s:.0f} s; "
          f"load {os.getloadavg()[0]:.1f}")
    assert diffs == [], f"seed {seed}: {diffs}"
    assert all(k >= KILLS_PER_PHASE for k in kills.values()), f"seed {seed}: only {kills} kills landed in a job"
    # The run's own record of it: Snakemake says nothing is left to do.
    again = _run(work, "-n", *COMMAND)
    assert "Nothing to be done" in again.stdout + again.stderr


# --- Bad inputs: one line naming the file, exit code 2, nothing written ---


def _cli(argv: list[str]) -> tuple[int, str]:
    """Run `unsamv2 ARGV` in this process; return its exit code and what it wrote to stderr."""
    import contextlib
    import io

    from unsamv2.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), err.getvalue()


def _assert_one_line_error(command: str, code: int, stderr: str, *names: str) -> str:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, stderr)
    assert lines[0].startswith(f"unsamv2 {command}: error: "), stderr
    for name in names:
        assert name in lines[0], (name, stderr)
    return lines[0]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "unsamv2_tiny.pt"
    code, err = _cli(["random-checkpoint", "--model-size", "tiny", "--format", "unsamv2", "--out", str(path),
                      "--quiet"])
    assert code == 0, err
    return path


def _bad_checkpoint(kind: str, good: Path, dest: Path) -> tuple[Path, list[str]]:
    """Write a bad checkpoint of ``kind``; return it and the words its error line must contain."""
    if kind == "garbage":
        dest.write_bytes(bytes(range(256)) * 40)
        return dest, ["not a PyTorch checkpoint"]
    if kind == "truncated":
        data = good.read_bytes()
        dest.write_bytes(data[: len(data) // 2])
        return dest, ["truncated or corrupt"]
    if kind == "json":
        dest.write_text('{"model": {}}')
        return dest, ["not a PyTorch checkpoint"]
    if kind == "empty":
        dest.write_bytes(b"")
        return dest, ["not a PyTorch checkpoint"]
    if kind == "no_model_key":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, dest)
        return dest, ["expected a dict with the weights under 'model'", "state_dict"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "json", "empty", "no_model_key"])
def test_bad_checkpoint_is_one_line_naming_it(kind: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 24), (30, 160, 60)).save(tmp_path / "img.png")
    bad, words = _bad_checkpoint(kind, tiny_checkpoint, tmp_path / f"{kind}.pt")
    code, err = _cli(["segment", str(tmp_path / "img.png"), "--point", "5,5", "--granularity", "0.5",
                      "--checkpoint", str(bad), "--image-size", "128", "--out-dir", str(tmp_path / "out"), "--quiet"])
    _assert_one_line_error("segment", code, err, str(bad), *words)
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_size_says_which_size_it_holds(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 24), (30, 160, 60)).save(tmp_path / "img.png")
    code, err = _cli(["segment", str(tmp_path / "img.png"), "--point", "5,5", "--granularity", "0.5",
                      "--checkpoint", str(tiny_checkpoint), "--model-size", "small", "--image-size", "128",
                      "--out-dir", str(tmp_path / "out"), "--quiet"])
    line = _assert_one_line_error("segment", code, err, str(tiny_checkpoint))
    assert line.startswith(f"unsamv2 segment: error: {tiny_checkpoint} holds SAM-2.1 tiny, but a small model was "
                           "requested"), line
    assert not (tmp_path / "out").exists()


def test_benchmark_folder_missing_its_files_names_what_is_expected(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "grabcut"
    root.mkdir()
    code, err = _cli(["evaluate-interactive", "--dataset", "grabcut", "--root", str(root), "--model", "unsamv2",
                      "--checkpoint", str(tiny_checkpoint), "--model-size", "tiny", "--image-size", "128",
                      "--device", "cpu", "--out-dir", str(tmp_path / "out"), "--quiet"])
    _assert_one_line_error("evaluate-interactive", code, err, str(root))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_empty_image_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    out = tmp_path / "images.txt"
    code, err = _cli(["select-images", "--images", str(folder), "--max-images", "5", "--out", str(out), "--quiet"])
    _assert_one_line_error("select-images", code, err, str(folder))
    assert not out.exists()


def test_id_list_naming_a_missing_image_is_one_line_naming_it(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (8, 8)).save(folder / f"{stem}.png")
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nzz_not_there\nb\n")
    out = tmp_path / "images.txt"
    code, err = _cli(["select-images", "--images", str(folder), "--id-list", str(ids), "--max-images", "5",
                      "--out", str(out), "--quiet"])
    _assert_one_line_error("select-images", code, err, "zz_not_there", str(ids))
    assert not out.exists()


def test_loss_log_survives_snakemake_deleting_the_killed_jobs_losses_csv(tmp_path: Path) -> None:
    """Snakemake deletes a killed job's outputs (losses.csv is one) before rerunning it; the resumed training
    must still log every step once: the rows up to its saved state from the journal, then its own."""
    import csv

    from unsamv2.train.loss_log import LOSS_CSV_COLUMNS, LossLog

    def row(step: int) -> dict[str, float]:
        return {c: float(step) for c in LOSS_CSV_COLUMNS} | {"step": step}

    path = tmp_path / "losses.csv"
    log = LossLog(path, None)
    for step in (1, 2, 3):
        log.write(row(step))  # killed after step 3; its last saved state was step 2
    path.unlink()
    log = LossLog(path, 2)
    log.write(row(3))
    log.write(row(4))
    log.close()
    with path.open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]
