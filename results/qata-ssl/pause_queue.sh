#!/usr/bin/env bash
# Pause / resume the qata-ssl queue's running training (tests and timings must not run beside it):
#   bash results/qata-ssl/pause_queue.sh STOP   ...   bash results/qata-ssl/pause_queue.sh CONT
# Signals every python process working in /work/ws-ssl (a table1 cell or a lever's semi-train / evaluate) and its
# children. The paused minutes count in the run's elapsed_s (metrics.jsonl), not in its figures.
set -euo pipefail
sig=${1:?STOP or CONT}
[[ $sig == STOP || $sig == CONT ]] || { echo "usage: $0 STOP|CONT" >&2; exit 2; }
for p in $(pgrep -f "python -m medref_cli .*--workdir /work/ws-ssl|medref_cli table1 --profile qata-ssl" || true); do
  kill -"$sig" "$p"
  for c in $(pgrep -P "$p" || true); do kill -"$sig" "$c"; done
  echo "$sig $p: $(ps -o args= -p "$p" | cut -c1-100)"
done
