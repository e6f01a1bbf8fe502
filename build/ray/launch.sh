#!/usr/bin/env bash
# Start a Ray cluster by hand on machines that share a filesystem, then build a zoo on it.
#
#   head node:     build/ray/launch.sh head   [--num-cpus N] [--num-gpus G]
#   each worker:   build/ray/launch.sh worker HEAD_HOST[:6379] [--num-cpus N] [--num-gpus G]
#   then (head):   build/ray/launch.sh build --preset paper --out /shared/zoo-paper [--device cuda]
#   when done:     build/ray/launch.sh stop        (on every node)
#
# Every node needs the same Python environment with the package installed (pip install 'rnn-stm-zoo[ray]')
# and must see the --out folder at the same path. `build` runs
# `zoo build --executor ray --address auto ...` (one Ray task per shard; a task whose worker dies is retried
# and resumes from the shard's saved chunks); re-running it after any failure resumes the build.
set -euo pipefail
PORT=${RAY_PORT:-6379}
cmd=${1:-}; shift || true
case "$cmd" in
    head)   exec ray start --head --port="$PORT" --include-dashboard=false "$@" ;;
    worker) addr=${1:?usage: launch.sh worker HEAD_HOST[:PORT]}; shift
            [[ "$addr" == *:* ]] || addr="$addr:$PORT"
            exec ray start --address="$addr" "$@" ;;
    build)  exec ${ZOO:-zoo} build --executor ray --address "${RAY_ADDRESS:-auto}" "$@" ;;
    stop)   exec ray stop ;;
    *)      sed -n '2,13p' "$0"; exit 2 ;;
esac
