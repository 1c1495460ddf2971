"""The demo workflow submitted through SLURM with the repository's profile (workflow/profiles/slurm).

A throwaway single-node cluster (munged + slurmctld + slurmd on this host, scripts/local_slurm.sh) is started for
the module and stopped at the end. Needs root and the Debian packages slurm-wlm and munge; run with
`python -m pytest -m slurm tests/test_slurm.py` (the default test command leaves these tests out).
"""
from __future__ import annotations

import csv
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
# The daemons live in /usr/sbin, which is not on every PATH.
SBIN_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the local cluster; yield the environment that points snakemake and the slurm clients at it."""
    if shutil.which("slurmctld", path=SBIN_PATH) is None or shutil.which("slurmd", path=SBIN_PATH) is None:
        pytest.skip("slurmctld/slurmd not installed (apt-get install slurm-wlm munge)")
    if shutil.which("munged", path=SBIN_PATH) is None:
        pytest.skip("munged not installed (apt-get install munge)")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd launches the jobs)")
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
