"""environment.yml (conda users) and pyproject.toml (pip) must ask for the same packages and bounds."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    env_reqs = {r.replace(" ", "") for r in pip_section if not r.startswith("-e")}
    assert env_reqs == {r.replace(" ", "") for r in project["dependencies"]}
    assert {_name(r) for r in env_reqs} >= {"torch", "sam2", "snakemake", "pycocotools", "opencv-python-headless"}
    assert "python=3.11" in env["dependencies"]
    assert project["requires-python"] == ">=3.11"
    # The same extras as scripts/setup_env.sh: tests, the web app, the SLURM executor plugin.
    assert "-e .[dev,app,slurm]" in pip_section


def test_console_script_points_at_the_cli() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"unsamv2": "unsamv2.cli:main"}
