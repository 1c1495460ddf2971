#!/usr/bin/env bash
# The GPU path, end to end, on random weights: what CPU-only development machines never run (bf16 autocast, CUDA
# kernels of the automatic mask generator, the oracle evaluation and video propagation on the GPU).
#
#   bash benchmarks/gpu_smoke.sh [WORK_DIR]      # WORK_DIR default: a fresh temporary folder
#
# On a CUDA machine it runs, each as the `unsamv2` command a user runs, and prints seconds and peak GPU memory
# (torch.cuda.max_memory_allocated of that process) per step:
#   1. train     50 steps of the paper recipe (SAM-2.1 hiera-small, 1024 px, LoRA 8 + granularity module, bf16
#                autocast) from a random SAM-2.1 checkpoint, on 8 synthetic 1024-px scenes' ground truth
#   2. pooled    whole-image generation pooled over g = 0.1 … 1.0 on one 1024-px image (the AR@1000 mode)
#   3. oracle    the interactive evaluation with the granularity oracle on 2 synthetic scenes (every object,
#                part and sub-part; 5 clicks)
#   4. video     a click propagated through 8 frames
# Without CUDA it says so and exits 0. Any failing step fails the script (exit 1) after the others have run.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  source .venv/bin/activate
fi

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_smoke.sh: no CUDA device here (torch.cuda.is_available() is False): nothing measured, nothing failed."
  exit 0
fi

WORK=${1:-$(mktemp -d -t unsamv2-gpu-smoke.XXXXXX)}
mkdir -p "$WORK"
echo "gpu_smoke.sh: $(python -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__)')"
echo "gpu_smoke.sh: working in $WORK"

# Runs `unsamv2 ARGS…` in one process and prints its wall time and peak GPU memory as one line of the table.
measure() {
  local name=$1
  shift
  python - "$name" "$@" <<'PY'
import sys, time, torch
name, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["unsamv2", *argv]
t0 = time.perf_counter()
code = 0
try:
    from unsamv2.cli import main
    code = main(argv) or 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
seconds = time.perf_counter() - t0
peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
status = "ok" if code == 0 else f"FAILED (exit {code})"
print(f"RESULT {name:8s} {seconds:8.1f} s  peak {peak:6.2f} GiB  {status}", flush=True)
sys.exit(code)
PY
}

failed=0
# One step: its table line, or its log's last lines when it failed.
run() {
  local name=$1 rc
  measure "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  grep -E "^RESULT" "$WORK/$name.log" || echo "RESULT $name FAILED before measuring"
  if [ "$rc" -ne 0 ]; then
    tail -n 15 "$WORK/$name.log" | sed "s/^/    $name: /"
    failed=1
  fi
}

set -e
unsamv2 random-checkpoint --model-size small --format sam2 --out "$WORK/sam2.1_hiera_small_random.pt" --quiet
unsamv2 synthetic --out-dir "$WORK/scenes" --n-images 8 --seed 0 --image-size 1024 --quiet
# The frames of a short clip: one scene shifted a few pixels per frame.
python - "$WORK" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
work = Path(sys.argv[1])
first = np.asarray(Image.open(sorted((work / "scenes" / "images").iterdir())[0]).convert("RGB"))
(work / "frames").mkdir(exist_ok=True)
for i in range(8):
    Image.fromarray(np.roll(first, 8 * i, axis=1)).save(work / "frames" / f"{i:05d}.jpg", quality=95)
PY
set +e

SETTINGS='{"model_size": "small", "base_checkpoint": "'"$WORK"'/sam2.1_hiera_small_random.pt", "max_steps": 50, "bf16": true, "device": "cuda"}'
run train train --pseudo-labels "$WORK/scenes/annotations" --images "$WORK/scenes/images" --out-dir "$WORK/train" \
  --settings "$SETTINGS" --quiet
CKPT="$WORK/train/final.pt"
[ -f "$CKPT" ] || CKPT="$WORK/sam2.1_hiera_small_random.pt"
IMAGE=$(ls "$WORK"/scenes/images/* | head -n 1)
run pooled segment-all "$IMAGE" --pooled --checkpoint "$CKPT" --device cuda --out "$WORK/pooled.json" --quiet
run oracle evaluate-interactive --dataset synthetic --root "$WORK/scenes" --model unsamv2 --checkpoint "$CKPT" \
  --granularity-mode oracle --device cuda --image-size 1024 --max-clicks 5 --limit 2 --out-dir "$WORK/oracle" --quiet
run video track "$WORK/frames" --frame 0 --point 512,512 --granularity 0.5 --checkpoint "$CKPT" --device cuda \
  --out-dir "$WORK/video" --quiet

echo "gpu_smoke.sh: each step's log is $WORK/<step>.log"
if [ "$failed" -ne 0 ]; then
  echo "gpu_smoke.sh: at least one step FAILED (see above)" >&2
  exit 1
fi
