#!/usr/bin/env bash
# Set up and start the qata-ssl queue on a fresh machine (from the main checkout, after `make venv`):
#   bash results/qata-ssl/start_queue.sh
# The code is the snapshot: CODE (7495c02) with the two table1 files of NAMES (29e080b: chained ablation names, the
# three-part ablation cell; training code untouched) and, from 2026-12-07 17:50, the three files of KEEP (30c1012:
# the option `method.pos_aug_keep_side` of the PosAug lever, off by default; those files are main's at KEEP, which
# equal CODE's but for that option). A detached worktree at /work/snap4 (on the development machine the branch
# qata-ssl-snapshot-posaug, commit 7497466; `bash bench/same_metrics.sh 3c88d39` there gives identical metrics, so
# the cells from /work/snap3 = 3c88d39 and from it are one code). Before 2026-12-07 the cells ran from c7455b0,
# then 7495c02: `bash bench/same_metrics.sh c7455b0` at 7495c02 gives identical metrics. It stays on this code to
# the end (main from 4df2dbf on encodes each caption alone: other float bits). The workspace is /work/ws-ssl; the
# queue is queue-order.txt less the cells already committed under runs/ or finished in the workspace. A cell
# that was running when a machine went away starts again from scratch (its checkpoints were on that machine);
# one whose checkpoint_latest.pt is still there is resumed by table1 (tested equal to an uninterrupted run). See
# qrun.sh for the loop.
set -euo pipefail
CODE=7495c02; NAMES=29e080b; KEEP=30c1012; SNAP=/work/snap4
here=$(cd "$(dirname "$0")" && pwd); main=$(cd "$here/../.." && pwd)
[ -x "$main/.venv/bin/python" ] || { echo "$main/.venv: missing; run make venv first" >&2; exit 1; }
git -C "$main" worktree prune
if [ ! -d $SNAP ]; then
  git -C "$main" worktree add --detach $SNAP "$CODE" >/dev/null
  git -C $SNAP checkout "$NAMES" -- medref_cli/stages/table1_matrix.py medref_cli/pipelines/table1.yaml
  git -C $SNAP checkout "$KEEP" -- medref_cli/semi/pos_aug.py medref_cli/semi/methods.py medref_cli/config/schema.py
fi
case "$(git -C $SNAP rev-parse --short=7 HEAD)" in "$CODE"|7497466) ;; *) echo "$SNAP is not at $CODE" >&2; exit 1 ;; esac
git -C $SNAP diff --quiet "$KEEP" -- medref_cli/semi/pos_aug.py medref_cli/semi/methods.py medref_cli/config/schema.py \
  || { echo "$SNAP: its PosAug files are not those of $KEEP" >&2; exit 1; }
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
