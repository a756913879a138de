#!/usr/bin/env bash
# Commit one finished qata-ssl cell from the queue's workspace: its record and test scores into runs/<cell>/, the
# tables rewritten. Usage (from the main checkout): bash results/qata-ssl/commit_cell.sh CELL [WORKSPACE]
# A lever run (CELL lever-NAME-semi-2pct-sN) goes to ../levers/runs/ instead, with its test scores in eval-test/
# (summary.json, per_case.csv) as a cell's; its row in ../levers/README.md is written by hand, and table.py reads
# the 2 % lever runs it names (the side parts alone, the sharpened ITCL) into its components tables. Then
# off_side.py and gated.py score the workspace's runs they have not scored yet (this cell) and keep those
# evaluations beside the committed runs. LATER=1: the record only; tables and scores wait for a later cell's commit
# (a few minutes of paused queue saved).
set -euo pipefail
cell=$1; ws=${2:-/work/ws-ssl}
cd "$(dirname "$0")"
src=$ws/runs/$cell
[ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'] in ('finished', 'stopped-early'))" "$src/run.json")" = True ] \
  || { echo "$src: not finished (run.json status)" >&2; exit 1; }
dst=runs/$cell
[[ $cell == lever-* ]] && dst=../levers/runs/$cell
mkdir -p "$dst/eval-test"
cp "$src/run.json" "$src/config.yaml" "$src/metrics.jsonl" "$dst/"
[ -f "$src/environment.jsonl" ] && cp "$src/environment.jsonl" "$dst/"  # the machine (code from 7495c02 on)
cp "$src/eval-test/summary.json" "$src/eval-test/per_case.csv" "$dst/eval-test/"
# the snapshot's --resume is not exact (its text features drift, fixed in 4df2dbf): say so, for the README's prose
if grep -q "resumed from" "$src/log.txt" 2>/dev/null; then
  echo "note: $cell was resumed ($(grep -m1 -o 'resumed from .*' "$src/log.txt")); say so in README.md" >&2
fi
if [ "${LATER:-0}" != 1 ]; then
  ../../.venv/bin/python table.py --write
  here=$(pwd)  # the scripts run outside the checkout (cwd /tmp), as the queue does
  (cd /tmp && "$here/../../.venv/bin/python" "$here/off_side.py" "$ws" && "$here/../../.venv/bin/python" "$here/gated.py" "$ws")
  git add runs ../levers/runs off-side.md gated.md  # the kept evaluations (eval-test-rescored/, -side-gate/)
fi
git add "$dst" README.md ../../README.md  # table.py writes the matrix into the project README
git commit -q -m "qata-ssl: $cell" && git log --oneline -1
[[ $cell != lever-* ]] || echo "note: write $cell's row in results/levers/README.md" >&2
