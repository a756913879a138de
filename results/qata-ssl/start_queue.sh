#!/usr/bin/env bash
# Set up and start the qata-ssl queue on a fresh machine (from the main checkout, after `make venv`):
#   bash results/qata-ssl/start_queue.sh
# The code is the snapshot: CODE (7495c02) with the two table1 files of NAMES (29e080b: chained ablation names, the
# three-part ablation cell; training code untouched), a detached worktree at /work/snap3 (on the development machine
# also the branch qata-ssl-snapshot, commit 3c88d39). Before 2026-12-07 the cells ran from c7455b0, then 7495c02:
# `bash bench/same_metrics.sh c7455b0` at 7495c02 gives identical metrics. It stays on this code to the end (main from
# 4df2dbf on encodes each caption alone: other float bits). The workspace is /work/ws-ssl; the queue is
# queue-order.txt less the cells already committed under runs/ or finished in the workspace. A cell that was
# running when a machine went away starts again from scratch (its checkpoints were on that machine). See qrun.sh for
# the loop.
set -euo pipefail
CODE=7495c02; NAMES=29e080b; SNAP=/work/snap3
here=$(cd "$(dirname "$0")" && pwd); main=$(cd "$here/../.." && pwd)
[ -x "$main/.venv/bin/python" ] || { echo "$main/.venv: missing; run make venv first" >&2; exit 1; }
git -C "$main" worktree prune
if [ ! -d $SNAP ]; then
  git -C "$main" worktree add --detach $SNAP "$CODE" >/dev/null
  git -C $SNAP checkout "$NAMES" -- medref_cli/stages/table1_matrix.py medref_cli/pipelines/table1.yaml
fi
[ "$(git -C $SNAP rev-parse --short=7 HEAD)" = "$CODE" ] || [ "$(git -C $SNAP rev-parse --short=7 HEAD)" = 3c88d39 ] \
  || { echo "$SNAP is not at $CODE" >&2; exit 1; }
git -C $SNAP diff --quiet "$NAMES" -- medref_cli/stages/table1_matrix.py medref_cli/pipelines/table1.yaml \
  || { echo "$SNAP: its table1 files are not those of $NAMES" >&2; exit 1; }
pgrep -f "bash qrun.sh" >/dev/null && { echo "a queue is running already" >&2; exit 1; }
mkdir -p /work/ws-ssl/logs
cp "$here/qrun.sh" /work/ws-ssl/
echo $SNAP > /work/ws-ssl/snap.txt
# (an `if`, not `a && b`: with set -e and pipefail, a loop whose last test fails would end the script here)
grep -v '^#' "$here/queue-order.txt" | while read -r cell; do
  # done: committed (under runs/, a lever run under ../levers/runs/), or finished in the workspace and not committed
  # yet (a machine that kept /work/ws-ssl); qrun.sh names a lever's run the same way
  case $cell in "lever "*) read -r _ lever seed <<< "$cell"; run=lever-$lever-semi-2pct-s${seed:-1}
                           committed=$here/../levers/runs/$run ;;
                *) run=$cell; committed=$here/runs/$cell ;; esac
  if [ -n "$cell" ] && [ ! -f "$committed/eval-test/summary.json" ] \
     && [ ! -f "/work/ws-ssl/runs/$run/eval-test/summary.json" ]; then echo "$cell"; fi
done > /work/ws-ssl/queue.txt
echo "$(wc -l < /work/ws-ssl/queue.txt) cells queued, first $(head -1 /work/ws-ssl/queue.txt)"
cd /work/ws-ssl && setsid nohup bash qrun.sh >> queue.log 2>&1 < /dev/null &
