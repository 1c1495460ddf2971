#!/usr/bin/env bash
# The offline demo, end to end: creates .venv if needed, then runs the workflow on scikit-image's photos with
# the weight-free backbone (config/demo.yaml). No network beyond the package registries; CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source "${UNSAMV2_VENV:-.venv}/bin/activate"
snakemake --cores "${CORES:-all}" --configfile config/demo.yaml "$@"
echo
echo "Demo results: results/demo/report/pseudo_labels/ (summary.csv, per_image.csv, granularity_histogram.png)"
echo "Pseudo-labels (SA-1B-style JSON, one per image): results/demo/pseudo_labels/json/"
