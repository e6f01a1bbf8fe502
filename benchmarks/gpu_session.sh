#!/usr/bin/env bash
# The first thing to run on a GPU machine: one call of at most ~8 minutes (TOTAL_S, default 460 s, includes
# everything; give the call a limit of ~500 s), from the repo root; results under $OUT as they come:
#   session.log        everything printed
#   check.json         the Triton kernels' checks on this GPU (the default launch option alone first, in its
#                      own process; then every launch option in parallel, one process each)
#   gpu_results.json   benchmarks/bench_gpu.py: checks vs the CPU trainer, the sweep of the launch options that
#                      passed, largest batch, throughput at 40/200/400 ms, projected paper-zoo hours, TF32
#   results.tar.gz     the validation build (metadata, card, manifest, two weight shards, figures, build logs)
#                      and the per-option check files; rebuilt after each step and on exit (trap)
# If the first check crashes or hangs (an illegal memory access poisons the CUDA context), the rest runs with
# ZOO_TRITON=0 (eager torch) instead of dying. Nothing is installed from the network (pip --no-deps); only
# torch, triton, numpy, pandas, pyarrow, safetensors, huggingface_hub, typer, rich, matplotlib and scipy are
# needed (no datasets, no ray). torch.compile is skipped unless COMPILE=1.
# SMOKE=1: every step on the CPU in seconds (Triton interpreted, tiny sizes, datasets and ray hidden), for CI.
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
W=${WORK:-/tmp/zoo-gpu}; rm -rf "$W"; mkdir -p "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-} COLUMNS=200
TOTAL_S=${TOTAL_S:-460}; VAL_S=${VAL_S:-110}; PACK_S=25
DEV=cuda; CHECK=""; BENCH=""; BUILD="--preset validation"; NSHARD=8; NOPT=""; PIPDRY=""; CHECK_T=150
if [ "${SMOKE:-0}" = 1 ]; then  # the interpreted kernels are slow: a longer budget, same steps
  TOTAL_S=${SMOKE_TOTAL_S:-900}; VAL_S=150; CHECK_T=400
  DEV=cpu; CHECK="--dry-run-cpu"; BENCH="--dry-run-cpu"; BUILD="--preset smoke --epochs 2"; NSHARD=2
  NOPT="3"; PIPDRY="--dry-run"  # one launch option in the "parallel" check (interpreted: slow)
  mkdir -p "$W/hidden/datasets" "$W/hidden/ray"  # the GPU machine has neither: make them fail to import
  for m in datasets ray; do echo "raise ImportError('$m is not installed on the GPU machine (SMOKE)')" > "$W/hidden/$m/__init__.py"; done
  export PYTHONPATH=$W/hidden:$PYTHONPATH CUDA_VISIBLE_DEVICES=""
fi
exec > >(tee -a "$OUT/session.log") 2>&1
left() { echo $(( TOTAL_S - ($(date +%s) - START) )); }
stamp() { echo "== $* [$(date +%T), $(( $(date +%s) - START )) s, $(left) s left]"; }
py() { python3 "$@"; }

pack() {  # the archive of what exists so far, replaced atomically
  ( cd "$W" || exit 0; shopt -s nullglob; items=()
    for f in check-*.json check-*.log val/metadata val/zoo.json val/README.md val/manifest.sha256 figures val-*.log \
             val/weights/nopost-narrow/nopost-narrow-d040-000.safetensors \
             val/weights/nopost-narrow/nopost-narrow-d200-000.safetensors validation.txt package.log figures.log; do
      [ -e "$f" ] && items+=("$f")
    done
    [ ${#items[@]} -gt 0 ] && tar czf "$OUT/.results.tar.gz.tmp" "${items[@]}" 2>/dev/null \
      && mv -f "$OUT/.results.tar.gz.tmp" "$OUT/results.tar.gz"
    rm -f "$OUT/.results.tar.gz.tmp" )
}
PIDS=()
run() {  # a step in the background, waited for: a signal to this shell is handled at once, not after it
  "$@" & PIDS+=($!); wait $!
}
wait_all() {  # the given processes only (a bare `wait` would also wait for the log's tee)
  local p; for p in "$@"; do wait "$p"; done
}
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stamp "exit ($rc): packing"
  local p
  for p in "${PIDS[@]}"; do  # the steps this script started and that still run (timeout relays the signal)
    [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] && kill "$p" 2>/dev/null
  done
  pack
  ls -la "$OUT"
  exit "$rc"
}
trap finish EXIT
trap 'exit 143' INT TERM HUP

stamp "0. environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
py -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# no network: the dependencies are there (SMOKE only tries it, to leave the test environment alone)
py -m pip install -q --no-deps --no-build-isolation $PIPDRY -e . 2>&1 | grep -v "as the 'root' user" | tail -1
py -c "
import importlib, zoo
mods = ['zoo.cli', 'zoo.kernels', 'zoo.train', 'zoo.build', 'zoo.api', 'zoo.figures', 'zoo.kernels.triton_kernels']
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:
        print('IMPORT FAILED', m, type(e).__name__, e)
print('imports checked:', ', '.join(mods))
"

stamp "1. Triton check of the default launch option, alone"
run timeout $(( $(left) > CHECK_T ? CHECK_T : $(left) )) python3 benchmarks/gpu_check.py $CHECK --tf32 --json "$W/check-default.json"
rc=$?
if [ $rc -gt 1 ]; then  # crashed, killed or hung: the CUDA context may be poisoned; torch from here on
  echo "Triton check died (exit $rc): continuing with ZOO_TRITON=0"; export ZOO_TRITON=0
fi

if [ "${ZOO_TRITON:-1}" != 0 ]; then
  stamp "1b. every launch option's check, in parallel (compiles them into Triton's cache for the sweep)"
  [ -z "$NOPT" ] && NOPT=$(py -c "from zoo.kernels import triton_kernels as k; print(*range(len(k.LAUNCH_OPTIONS)))")
  CP=()
  for i in $NOPT; do
    timeout $(( $(left) > 2 * CHECK_T ? CHECK_T : 60 )) python3 benchmarks/gpu_check.py $CHECK --option "$i" \
      --json "$W/check-$i.json" > "$W/check-$i.log" 2>&1 & PIDS+=($!); CP+=($!)
  done
  wait_all "${CP[@]}"
  cat "$W"/check-[0-9]*.log
fi
py - "$W" "$OUT/check.json" <<'EOF'
import glob, json, os, sys
w, out = sys.argv[1], sys.argv[2]
res = {"checks": [], "crashed": []}
for p in sorted(glob.glob(f"{w}/check-*.json")):
    try:
        r = json.load(open(p))
    except ValueError:
        continue
    res.setdefault("env", r.get("env"))
    res["checks"] += r.get("checks", [])
    if "running" in r:  # the process died inside this check
        res["crashed"].append(r["running"])
res["zoo_triton_disabled"] = os.environ.get("ZOO_TRITON") == "0"
tmp = out + ".tmp"
json.dump(res, open(tmp, "w"), indent=1)
os.replace(tmp, out)
print("checks:", [(c["index"], c["tf32"], c["check"][:60]) for c in res["checks"]], "crashed:", res["crashed"])
EOF
pack

BT=$(( $(left) - VAL_S - PACK_S ))
stamp "2. bench_gpu.py (budget ${BT} s)"
if [ "$BT" -gt 30 ]; then
  run timeout $BT python3 benchmarks/bench_gpu.py $BENCH --budget-s $(( BT - 15 )) --sweep-from "$OUT/check.json" \
    ${COMPILE:+--compile}
  echo "bench_gpu exit $?"
else
  echo "skipped: not enough time left"
fi
pack

# the Triton launch options that won the benchmark's sweep
eval "$(py -c "
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    r = {}
b = [x for x in r.get('triton_sweep', []) if x.get('env') and x.get('epoch_s')]
print(' '.join(f'export {k}={v};' for k, v in (min(b, key=lambda x: x['epoch_s'])['env'] if b else {}).items()))
" "$OUT/gpu_results.json")"
BUILD_T=$(( $(left) - PACK_S - 20 ))
stamp "3. validation build, $NSHARD processes for ${BUILD_T} s; Triton options: $(env | grep ZOO_TRITON | tr '\n' ' ')"
if [ "$BUILD_T" -gt 15 ]; then
  BP=()
  for i in $(seq 0 $(( NSHARD - 1 ))); do
    timeout $BUILD_T python3 -m zoo.cli build $BUILD --device $DEV --out "$W/val" --shard $i/$NSHARD > "$W/val-$i.log" 2>&1 &
    PIDS+=($!); BP+=($!)
  done
  wait_all "${BP[@]}"
  tail -n 3 "$W"/val-0.log
  run timeout 30 python3 -m zoo.cli package "$W/val" --partial > "$W/package.log" 2>&1; tail -3 "$W/package.log"
  pack
  { echo "kernels used by the build processes:"; grep -ho "([a-z0-9]* kernels)" "$W"/val-*.log | sort | uniq -c
    timeout 20 python3 -m zoo.cli info "$W/val" 2>&1 | tail -15; } | tee "$W/validation.txt"
  [ "$(left)" -gt 20 ] && { timeout $(( $(left) - 15 )) python3 -m zoo.cli figures "$W/val" --out "$W/figures" \
    > "$W/figures.log" 2>&1 || echo "figures failed: $(tail -2 "$W/figures.log")"; }
else
  echo "skipped: not enough time left"
fi
stamp "done"
