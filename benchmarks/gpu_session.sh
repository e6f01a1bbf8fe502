#!/usr/bin/env bash
# One prepared GPU session (run from the repo root on a CUDA machine; results under $OUT):
#   1. benchmarks/bench_gpu.py   -> gpu_results.json (kernel checks, Triton launch options, throughput, largest
#      batch, projected paper-zoo time)
#   2. the `validation` preset (2,520 networks, 8 shard processes sharing the GPU) + `zoo figures`
#      -> validation.tar.gz (metadata, card, manifest, two weight shards, figures)
# SMOKE=1 runs every step with 2 epochs on the CPU, to check the script itself.
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-} COLUMNS=200
# STEPS="bench validation" (default both, ~10 minutes). On a machine with a 10-minute limit per command, run them
# as two calls on the same warm machine: STEPS=bench (~5.5 min), then STEPS=validation (~4 min).
STEPS=${STEPS:-"bench validation"}
DEV=cuda; EXTRA=""; BENCH_T=${BENCH_T:-330}; BUILD_T=${BUILD_T:-240}
if [ "${SMOKE:-0}" = 1 ]; then DEV=cpu; EXTRA="--epochs 2 --seeds 1"; BENCH_T=5; BUILD_T=300; fi
W=${WORK:-/tmp/zoo-gpu}; rm -rf "$W"; mkdir -p "$W"; BEST=/tmp/zoo-gpu-results.json
zoo() { python3 -m zoo.cli "$@"; }
{
  date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
  python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -1
  echo "== 1. bench_gpu"; [ "$DEV" = cuda ] && [[ " $STEPS " == *" bench "* ]] && {
    timeout $BENCH_T python3 benchmarks/bench_gpu.py --budget-s $((BENCH_T - 25))
    cp "$OUT/gpu_results.json" "$BEST" 2>/dev/null; }  # kept on the machine for a later STEPS=validation call
  [[ " $STEPS " == *" validation "* ]] || { date; exit 0; }
  # the Triton launch options that won the benchmark's sweep, if it ran on this machine
  eval "$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); b=[x for x in r.get('triton_sweep',[]) if x.get('env') and x.get('epoch_s')]; b=min(b,key=lambda x:x['epoch_s'])['env'] if b else {}; print(' '.join(f'export {k}={v};' for k,v in b.items()))" "$BEST" 2>/dev/null)"
  echo "== 2. validation ($(date +%T)); Triton options: $(env | grep ZOO_TRITON_ | tr '\n' ' ')"
  for i in 0 1 2 3 4 5 6 7; do
    timeout $BUILD_T python3 -m zoo.cli build --preset validation --device $DEV $EXTRA --out "$W/val" --shard $i/8 > "$W/val-$i.log" 2>&1 &
  done
  wait; date +%T; tail -n 3 "$W"/val-0.log
  zoo package "$W/val" --partial
  echo "kernels used by the 8 build processes:"; grep -ho "([a-z0-9]* kernels)" "$W"/val-*.log | sort | uniq -c
  timeout 60 python3 -m zoo.cli figures "$W/val" --out "$W/figures" || echo "figures failed"
  (cd "$W" && tar czf "$OUT/validation.tar.gz" val/metadata val/zoo.json val/README.md val/manifest.sha256 \
     val/weights/nopost-narrow/nopost-narrow-d040-000.safetensors val/weights/nopost-narrow/nopost-narrow-d200-000.safetensors \
     $(ls -d figures 2>/dev/null) val-*.log)
  date
} 2>&1 | tee "$OUT/session.log"
