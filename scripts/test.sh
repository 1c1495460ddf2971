#!/usr/bin/env bash
# The test suite: creates .venv if needed, then runs pytest. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -m slow` for the slow tests). pytest's exit code is returned unchanged, so
# "no tests collected" (5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source "${UNSAMV2_VENV:-.venv}/bin/activate"
if [ "$#" -eq 0 ]; then
  set -- -m "not slow and not slurm and not faults"
fi
exec python -m pytest "$@"
