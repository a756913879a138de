#!/usr/bin/env bash
# Set up and start the qata-ssl queue on a fresh machine (from the main checkout, after `make venv`):
#   bash results/qata-ssl/start_queue.sh
# The code is the snapshot CODE (a detached worktree at /work/snap2; from 2026-12-07 on, c7455b0 before:
# `bash bench/same_metrics.sh c7455b0` at CODE gives identical metrics, and CODE adds environment.jsonl and the
# t_patchmix_share log), the workspace /work/ws-ssl; the queue is queue-order.txt less the cells already committed
# under runs/. A cell that was running when a machine went away
# starts again from scratch (its checkpoints were on that machine). See qrun.sh for the loop.
set -euo pipefail
CODE=7495c02
here=$(cd "$(dirname "$0")" && pwd); main=$(cd "$here/../.." && pwd)
[ -x "$main/.venv/bin/python" ] || { echo "$main/.venv: missing; run make venv first" >&2; exit 1; }
git -C "$main" worktree prune
[ -d /work/snap2 ] || git -C "$main" worktree add --detach /work/snap2 "$CODE" >/dev/null
[ "$(git -C /work/snap2 rev-parse --short=7 HEAD)" = "$CODE" ] || { echo "/work/snap2 is not at $CODE" >&2; exit 1; }
pgrep -f "bash qrun.sh" >/dev/null && { echo "a queue is running already" >&2; exit 1; }
mkdir -p /work/ws-ssl/logs
cp "$here/qrun.sh" /work/ws-ssl/
echo /work/snap2 > /work/ws-ssl/snap.txt
# (an `if`, not `a && b`: with set -e and pipefail, a loop whose last test fails would end the script here)
grep -v '^#' "$here/queue-order.txt" | while read -r cell; do
  if [ -n "$cell" ] && [ ! -f "$here/runs/$cell/eval-test/summary.json" ]; then echo "$cell"; fi
done > /work/ws-ssl/queue.txt
echo "$(wc -l < /work/ws-ssl/queue.txt) cells queued, first $(head -1 /work/ws-ssl/queue.txt)"
cd /work/ws-ssl && setsid nohup bash qrun.sh >> queue.log 2>&1 < /dev/null &
