#!/usr/bin/env bash
# Submit a sharded zoo build to SLURM: one job array for the shards, then the packaging job (afterok).
#
#   build/slurm/submit.sh --out /shared/zoo-paper --preset paper [plan overrides] [--gpu] [--tasks N]
#                         [--device D] [--batch-size B] [--dry-run]
#
# Plan overrides (--family, --lr, --delay, --seeds, --epochs, --shard-size) go to `zoo plan` and to every
# `zoo build`. The array has one task per shard (`zoo plan --json` -> n_shards), or --tasks N (fewer tasks,
# each taking every N-th shard). --gpu adds --gres=gpu:1 and --device cuda. --dry-run prints the sbatch
# commands. Environment: ZOO (the zoo command), SBATCH (the sbatch command), SBATCH_EXTRA (more sbatch options,
# e.g. "--partition=gpu --account=lab"), VERIFY_SAMPLE (networks `zoo verify` retrains after packaging).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZOO=${ZOO:-zoo}
SBATCH=${SBATCH:-sbatch}
OUT="" TASKS="" GPU=0 DRY=0 DEVICE=""
PLAN_ARGS=() BUILD_ARGS=()
while (( $# )); do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --tasks) TASKS=$2; shift 2 ;;
        --gpu) GPU=1; shift ;;
        --dry-run) DRY=1; shift ;;
        --device) DEVICE=$2; shift 2 ;;
        --batch-size) BUILD_ARGS+=("$1" "$2"); shift 2 ;;
        --preset|-p|--family|--lr|--delay|--seeds|--epochs|--shard-size) PLAN_ARGS+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "submit.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -n "$OUT" ]] || { echo "submit.sh: --out RELEASE_FOLDER (on a shared filesystem) is required" >&2; exit 2; }
if (( GPU )); then DEVICE=${DEVICE:-cuda}; fi
DEVICE=${DEVICE:-cpu}

# shellcheck disable=SC2086
PLAN_JSON=$(${ZOO} plan ${PLAN_ARGS[@]+"${PLAN_ARGS[@]}"} --json)
N_SHARDS=$(printf '%s' "$PLAN_JSON" | python3 -c 'import json, sys; print(json.load(sys.stdin)["n_shards"])')
N_TASKS=${TASKS:-$N_SHARDS}
if (( N_TASKS > N_SHARDS )); then N_TASKS=$N_SHARDS; fi
if (( N_TASKS < 1 )); then echo "submit.sh: the plan has no shards" >&2; exit 2; fi
echo "plan: ${N_SHARDS} shards -> job array of ${N_TASKS} task(s), output ${OUT}"

GRES=()
if (( GPU )); then GRES=(--gres=gpu:1 --cpus-per-task=2); fi
# shellcheck disable=SC2206
EXTRA=(${SBATCH_EXTRA:-})
ARRAY_CMD=("$SBATCH" --parsable --array="0-$((N_TASKS - 1))" ${GRES[@]+"${GRES[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} "$HERE/zoo-array.sbatch"
           ${PLAN_ARGS[@]+"${PLAN_ARGS[@]}"} ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"} --device "$DEVICE" --out "$OUT")
if (( DRY )); then
    echo "${ARRAY_CMD[*]}"
    echo "$SBATCH --parsable --dependency=afterok:<array job id> ${EXTRA[*]+"${EXTRA[*]}"} $HERE/zoo-package.sbatch $OUT"
    exit 0
fi
mkdir -p zoo-logs
ARRAY_JOB=$("${ARRAY_CMD[@]}")
ARRAY_JOB=${ARRAY_JOB%%;*}   # --parsable prints "jobid[;cluster]"
PACKAGE_JOB=$("$SBATCH" --parsable --dependency="afterok:${ARRAY_JOB}" ${EXTRA[@]+"${EXTRA[@]}"} "$HERE/zoo-package.sbatch" "$OUT")
PACKAGE_JOB=${PACKAGE_JOB%%;*}
echo "submitted array job ${ARRAY_JOB} (${N_TASKS} tasks) and packaging job ${PACKAGE_JOB} (afterok:${ARRAY_JOB})"
