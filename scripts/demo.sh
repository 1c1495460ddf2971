#!/usr/bin/env bash
# The offline demo, end to end: creates .venv if needed, then runs the workflow twice, CPU only, no network
# beyond the package registries:
#   1. config/demo_photos.yaml: Stage 1 (discovery + granularity + report) on scikit-image's photographs (~1 min);
#   2. config/demo.yaml: the granularity ablation in miniature on synthetic scenes: discovery → training of
#      UnSAMv2 and of the SAM-2-style baseline from random initialisation → evaluation (~9 min on 2 idle cores).
# Extra arguments go to both snakemake calls (e.g. --cores 4, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source "${UNSAMV2_VENV:-.venv}/bin/activate"
snakemake --cores "${CORES:-all}" --configfile config/demo_photos.yaml "$@"
snakemake --cores "${CORES:-all}" --configfile config/demo.yaml "$@"
# The Snakemake HTML report of the training experiment: every table and figure with its caption.
if [[ " $* " != *" -n "* && " $* " != *" --dry-run "* ]]; then
  snakemake --configfile config/demo.yaml --report results/demo/report.html
fi
echo
echo "Stage 1 on photographs: results/demo_photos/report/pseudo_labels/ (summary.csv, granularity_histogram.png, ...)"
echo "Pseudo-labels (SA-1B-style JSON, one per image): results/demo_photos/pseudo_labels/json/"
echo "Training experiment: results/demo/evaluation/interactive/per_level/synthetic.csv (first-click IoU per level,"
echo "UnSAMv2 with the granularity oracle vs the SAM-2-style baseline's best of 3 and single mask), per-model folders,"
echo "loss curves in results/demo/train*/, pseudo-label recall in results/demo/report/pseudo_labels/"
echo "Paper vs this run: results/demo/report/tables.md and paper_comparison.csv; everything in one page:"
echo "results/demo/report.html (open it in a browser)"
