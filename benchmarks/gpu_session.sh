#!/bin/bash
# One lease of the GPU device in one command (issues 12 and 14): benchmarks/gpu.py, then as many steps of the
# L v2 pre-training (configs/mini_l_v2.yaml, --resume) as fit before the deadline; results land in $OUT.
#   device run: bash benchmarks/gpu_session.sh [SECONDS]   (carry .whl: ase and vesin wheels for the image's python)
# The pre-training chunk runs the same config as on CPU (float32, eager, the same data order and schedule); only
# trainer.num_workers differs. It stops itself (trainer.max_time_minutes) early enough to validate, export and
# write last.ckpt, which the next chunk resumes from, on GPU or CPU alike.
# The device copies the working tree (64 MiB at most; the tracked tree is ~130 MB): first move aside, e.g. into a
# tar outside the checkout, every tracked file of >= 60 kB the run does not read (all but data/mini_v2/*/{train,val}
# and runs/jmp-mini-l-v2/checkpoints/last.ckpt and jmp_calc/models/), and unpack it again afterwards.
set -u
export PYTHONUNBUFFERED=1
TOTAL=${1:-570}
OUT=${OUT:-/tmp/gpu_session_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 3
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 -c "import torch, ase, vesin, lightning, jmp_calc, training.pretrain; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__)" || exit 4
timeout 150 python3 benchmarks/gpu.py --batches 1 2 4 8 16 32 64 --budget 100 --out "$OUT/gpu.txt" 2>&1 \
  | tee "$OUT/gpu.log"
left=$((TOTAL - SECONDS))
minutes=$(python3 -c "print(max(0.5, ($left - 130) / 60))")
echo "pre-training chunk: ${minutes} min of training in the $left s left"
timeout $((left - 20)) python3 -m training.pretrain configs/mini_l_v2.yaml --resume trainer.max_time_minutes=$minutes \
  trainer.precision=32-true trainer.compile=false trainer.num_workers=8 trainer.progress=false 2>&1 \
  | tee "$OUT/pretrain.log"
run=runs/jmp-mini-l-v2
cp $run/checkpoints/last.ckpt "$OUT/last.ckpt"
best=$(ls -t $run/checkpoints/step*.ckpt 2>/dev/null | head -1)
[ -n "$best" ] && cp "$best" "$OUT/"
tar -czf "$OUT/run.tgz" $run/metrics.csv $run/config.json $run/model $run/learning_curve.png 2>/dev/null
ls -la "$OUT"
echo "session: $SECONDS s"
