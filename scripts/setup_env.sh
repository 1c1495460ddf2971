#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv: torch, sam2 without its optional CUDA
# extension, and this package with its test extras and the web app's (Gradio). Safe to rerun: it does nothing
# when .venv is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${UNSAMV2_VENV:-.venv}"
"$PYTHON" - <<'PY' || { echo "unsamv2 needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

stamp="$VENV/.unsamv2-installed"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# torch first: sam2 compiles against it, so it must be importable before sam2 is built without isolation.
"${pip[@]}" install "torch>=2.5.1" "torchvision>=0.20.1"
# SAM2_BUILD_CUDA=0: sam2's CUDA extension only fills small holes in masks; without it sam2 installs anywhere.
SAM2_BUILD_CUDA=0 "${pip[@]}" install --no-build-isolation "sam2==1.1.0"
# slurm: the executor plugin of the README's cluster steps and the SLURM tests (`--executor slurm`).
"${pip[@]}" install -e ".[dev,app,slurm]"
echo "$want" > "$stamp"
