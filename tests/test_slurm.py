"""The demo workflow submitted through SLURM with the repository's profile (workflow/profiles/slurm).

A throwaway single-node cluster (munged + slurmctld + slurmd on this host, scripts/local_slurm.sh) is started for
the module and stopped at the end. Needs root and the Debian packages slurm-wlm and munge; run with
`python -m pytest -m slurm tests/test_slurm.py` (the default test command leaves these tests out).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "local_slurm.sh"
DEFAULT_STATE = Path("/tmp/unsamv2-slurm")  # local_slurm.sh's default STATE_DIR
# The daemons live in /usr/sbin, which is not on every PATH.
SBIN_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"


def _need_plugin() -> None:
    import importlib.util

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (bash scripts/setup_env.sh, or "
                    "pip install -e '.[slurm]')")


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the local cluster; yield the environment that points snakemake and the slurm clients at it."""
    _need_plugin()
    if shutil.which("slurmctld", path=SBIN_PATH) is None or shutil.which("slurmd", path=SBIN_PATH) is None:
        pytest.skip("slurmctld/slurmd not installed (apt-get install slurm-wlm munge)")
    if shutil.which("munged", path=SBIN_PATH) is None:
        pytest.skip("munged not installed (apt-get install munge)")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd launches the jobs)")
    if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, check=False).returncode == 0:
        # Started by hand (`bash scripts/local_slurm.sh start`): use it and leave it running.
        env = dict(os.environ)
        env["SLURM_CONF"] = str(DEFAULT_STATE / "slurm" / "slurm.conf")
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        yield env
        return
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True,
                           timeout=180, check=False)
    try:
        assert start.returncode == 0, f"local_slurm.sh start failed:\n{start.stdout}\n{start.stderr}"
        env = dict(os.environ)
        env["SLURM_CONF"] = str(state / "slurm" / "slurm.conf")
        # The rules call the `unsamv2` console script, and the SLURM jobs call python -m snakemake: both come from
        # this interpreter's bin dir (sbatch --export=ALL hands PATH on to the jobs).
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120,
                       check=False)


def _slurm_failure(work: Path, proc: subprocess.CompletedProcess) -> str:
    slurm_logs = "\n".join(
        f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    )
    job_logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((work / "logs").rglob("*.log")))
    return f"snakemake via SLURM failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}\n{slurm_logs}\n{job_logs}"


def _demo_run(tmp_path: Path) -> tuple[Path, Path]:
    """A temporary copy of workflow/ + config/, three small photos and a demo config over them (2 shards)."""
    import skimage.data

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.chelsea()).save(photos / "a_chelsea.png")
    Image.fromarray(skimage.data.coffee()[::2, ::2]).save(photos / "b_coffee.jpg")
    Image.fromarray(skimage.data.camera()[::2, ::2]).save(photos / "c_camera.png")  # grayscale
    cfg = yaml.safe_load((work / "config" / "demo_photos.yaml").read_text())
    cfg["run"] = "t"
    cfg["images"].update({"source": "folder", "folder": str(photos), "max_images": 3, "shard_size": 2})
    cfg["discovery"]["local_size"] = 256
    cfg_path = work / "t.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return work, cfg_path


def test_demo_workflow_runs_through_slurm(slurm_env: dict[str, str], tmp_path: Path) -> None:
    work, cfg = _demo_run(tmp_path)
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm", "--jobs", "4",
           "--configfile", str(cfg)]
    proc = subprocess.run(cmd, cwd=work, env=slurm_env, capture_output=True, text=True, timeout=700, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        slurm_logs = "\n".join(
            f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
        )
        job_logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((work / "logs").rglob("*.log")))
        raise AssertionError(f"snakemake via SLURM failed ({proc.returncode}):\n{out[-6000:]}\n{slurm_logs}\n{job_logs}")

    # The cluster jobs (2 discovery + 2 scoring shards) were submitted with sbatch; select_images and the report
    # are localrules and run on the submitting host.
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(job_ids) == 4, out[-6000:]
    # ...and SLURM ran them: squeue keeps finished jobs for MinJobAge (600 s in local_slurm.sh's slurm.conf).
    squeue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(job_ids)],
                            env=slurm_env, capture_output=True, text=True, timeout=60, check=True)
    states = dict(line.split("|") for line in squeue.stdout.split())
    assert states == dict.fromkeys(job_ids, "COMPLETED"), squeue.stdout

    report = work / "results" / "t" / "report" / "pseudo_labels"
    with open(report / "summary.csv") as fh:
        summary = next(csv.DictReader(fh))
    assert int(summary["images_listed"]) == 3
    assert int(summary["images_labelled"]) == 3
    assert int(summary["images_failed"]) == 0
    with open(report / "per_image.csv") as fh:
        names = sorted(row["file_name"] for row in csv.DictReader(fh))
    assert names == ["a_chelsea.png", "b_coffee.jpg", "c_camera.png"]


# --- The sbatch parameters the profile generates (no cluster needed: a fake sbatch records its arguments) ---

FAKE_SBATCH = """#!/bin/sh
# Records the call for the test and refuses the job, so nothing runs.
printf '%s\\n' "$*" >> "$SBATCH_CAPTURE"
echo "sbatch: error: recorded by the test's fake sbatch" >&2
exit 1
"""


def _sbatch_calls(tmp_path: Path, name: str, discovery_device: str) -> list[str]:
    """Run the photo demo's Stage 1 through the repository's SLURM profile with a fake sbatch on PATH; return the
    sbatch argument lines (2 discovery shards, each submitted twice: the profile retries a failed job once)."""
    import skimage.data

    _need_plugin()
    work = tmp_path / name
    work.mkdir()
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    # What the README tells a cluster user to do: put the partition into the profile.
    profile = work / "workflow" / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    settings["default-resources"]["slurm_partition"] = "testpartition"
    profile.write_text(yaml.safe_dump(settings))
    photos = work / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.chelsea()[::4, ::4]).save(photos / "a.png")
    Image.fromarray(skimage.data.coffee()[::4, ::4]).save(photos / "b.png")
    cfg = yaml.safe_load((work / "config" / "demo_photos.yaml").read_text())
    cfg["run"] = "t"
    cfg["images"].update({"source": "folder", "folder": str(photos), "max_images": 2, "shard_size": 1})
    cfg["discovery"]["device"] = discovery_device
    (work / "t.yaml").write_text(yaml.safe_dump(cfg))
    fake = work / "fakebin"
    fake.mkdir()
    (fake / "sbatch").write_text(FAKE_SBATCH)
    # The plugin's status queries and cluster probes find empty answers.
    for tool in ("squeue", "sinfo", "scontrol"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(fake), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["SBATCH_CAPTURE"] = str(work / "calls.txt")
    env.pop("SLURM_CONF", None)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm",
                           "--configfile", "t.yaml", "--latency-wait", "1"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    if "invalid choice: 'slurm'" in out:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    assert proc.returncode != 0, out[-3000:]  # every submission was refused
    # select_images is a localrule: it ran here, not through sbatch.
    assert (work / "results" / "t" / "images.txt").exists(), out[-3000:]
    return (work / "calls.txt").read_text().splitlines()


def _sbatch_options(call: str) -> dict[str, str]:
    """The scheduling options of one sbatch call (everything before --wrap)."""
    head = call.split("--wrap=", 1)[0]
    opts = {}
    for m in re.finditer(r"(?:^|\s)(-p|-t|-A|--mem|--cpus-per-task|--gpus|--comment)[ =](\S+)", head):
        opts[m.group(1)] = m.group(2)
    attempt = re.search(r"--attempt (\d+)", call)
    opts["attempt"] = attempt.group(1) if attempt else "?"
    return opts


@pytest.mark.parametrize(("device", "gpus"), [("cpu", None), ("cuda", "1")])
def test_profile_maps_rule_resources_to_sbatch(tmp_path: Path, device: str, gpus: str | None) -> None:
    """discover_shard is a CPU rule with `discovery.device: cpu` and a GPU rule (gpu=1) with `cuda`: its threads,
    mem_mb, runtime and gpu reach sbatch, the partition comes from the profile, and the retry asks for twice the
    memory (rules/discover.smk: threads 1 with the offline backbone, mem_mb 16000 × attempt, runtime 600)."""
    calls = _sbatch_calls(tmp_path, device, device)
    options = sorted((_sbatch_options(c) for c in calls), key=lambda o: (o["--comment"], o["attempt"]))
    # The comment joins the wildcard values: {stage1} (empty for the run's own Stage 1) then {shard}.
    assert [(o["--comment"], o["attempt"]) for o in options] == [
        ("rule_discover_shard_wildcards__0", "1"), ("rule_discover_shard_wildcards__0", "2"),
        ("rule_discover_shard_wildcards__1", "1"), ("rule_discover_shard_wildcards__1", "2"),
    ]
    for o in options:
        assert o["-p"] == "testpartition"
        assert o["-t"] == "600"
        assert o["--cpus-per-task"] == "1"
        assert o["--mem"] == str(16000 * int(o["attempt"]))
        assert o.get("--gpus") == gpus


# --- Training (DDP) and evaluation through SLURM, compared with the same run on this host ---

#: The local cluster is one 2-CPU node without GPUs and with the host's memory: what a user puts into the profile
#: for their cluster (here on the command line). The training rule still runs `torchrun --nproc_per_node 2`
#: (train_gpus: 2): two gloo processes inside one SLURM job.
CLUSTER_FIT = ["--max-threads", "2", "--set-resources", "train:gpu=0", "train:mem_mb=4000"]


@pytest.mark.timeout(3600)  # two runs of the toy; minutes each on a loaded 2-core machine
def test_toy_training_with_ddp_and_evaluation_through_slurm_equal_the_local_run(
        slurm_env: dict[str, str], tmp_path: Path) -> None:
    from tests.toy_workflow import assert_every_output_parses, differences, toy_workdir

    overrides = {"train_gpus": 2}
    local = toy_workdir(tmp_path / "local", **overrides)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "t.yaml"], cwd=local,
                          env=slurm_env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]

    work = toy_workdir(tmp_path / "slurm", **overrides)
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm", "--jobs", "2",
           "--configfile", "t.yaml", *CLUSTER_FIT]
    proc = subprocess.run(cmd, cwd=work, env=slurm_env, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise AssertionError(_slurm_failure(work, proc))
    out = proc.stdout + proc.stderr
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert job_ids, out[-4000:]
    # The training job ran torchrun with 2 processes (rank 0 and rank 1 both started) inside its SLURM job.
    train_log = (work / "logs" / "t" / "train.log").read_text()
    assert "torchrun --standalone --nproc_per_node 2" in out, out[-4000:]
    summary = json.loads((work / "results" / "t" / "train" / "train_summary.json").read_text())
    assert summary["world_size"] == 2, train_log[-2000:]
    squeue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(job_ids)],
                            env=slurm_env, capture_output=True, text=True, timeout=60, check=True)
    states = dict(line.split("|") for line in squeue.stdout.split())
    assert states == dict.fromkeys(job_ids, "COMPLETED"), squeue.stdout

    assert assert_every_output_parses(work / "results" / "t") > 0
    assert differences(local / "results" / "t", work / "results" / "t") == []
