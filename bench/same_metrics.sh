#!/usr/bin/env bash
# Behaviour check for refactors: a tiny pretrain (15 epochs) and tiny semi-medref semi-trains (6 epochs, every
# part on; the medref and the official recipe) from commit BASE and from HEAD on the embedded qata-mini; their metrics.jsonl must be identical
# (timing fields left out; a field only HEAD logs, a new diagnostic, is listed and not compared).
# Usage: bash bench/same_metrics.sh BASE   (run it alone on the machine: ~1-2 min)
set -eu
BASE=$1
REPO=$(git rev-parse --show-toplevel)
PY=$REPO/.venv/bin/python
TMP=$(mktemp -d)
trap 'git -C "$REPO" worktree remove --force "$TMP/old" 2>/dev/null; git -C "$REPO" worktree remove --force "$TMP/new" 2>/dev/null; rm -rf "$TMP"' EXIT
git -C "$REPO" worktree add -q -f "$TMP/old" "$BASE"
git -C "$REPO" worktree add -q -f "$TMP/new" HEAD
echo "method: {burn_in_epochs: 2, unsup_ramp_epochs: 2, ema_ramp_epochs: 2}" > "$TMP/semi.yaml"
cd "$TMP"  # `python -m` puts the current folder first on sys.path: from the repo root both sides would run its code
for side in old new; do
  export PYTHONPATH=$TMP/$side MEDREF_WORKDIR=$TMP/ws-$side
  M="$PY -m medref_cli -q"
  $M prepare qata --raw "$REPO/sample_data/qata-mini" > /dev/null
  $M pretrain -d qata -l 25% --preset tiny --epochs 15 > /dev/null 2>&1
  $M semi-train -d qata -l 25% --preset tiny --epochs 6 --config "$TMP/semi.yaml" > /dev/null 2>&1
  $M semi-train -d qata -l 25% --preset tiny --epochs 6 --config "$TMP/semi.yaml" --recipe official > /dev/null 2>&1
done
TMP=$TMP "$PY" - <<'PY'
import json, os, sys
tmp, drop, ok = os.environ["TMP"], {"epoch_s", "elapsed_s"}, True
for run in ("pretrain-qata-25pct-s42", "semi-medref-qata-25pct-s42", "semi-medref-official-qata-25pct-s42"):
    rows = {side: [{k: v for k, v in json.loads(line).items() if k not in drop}
                   for line in open(f"{tmp}/ws-{side}/runs/{run}/metrics.jsonl")] for side in ("old", "new")}
    added = sorted({k for r in rows["new"] for k in r} - {k for r in rows["old"] for k in r})
    same = len(rows["old"]) == len(rows["new"]) and all(
        {k: v for k, v in new.items() if k not in added} == old for old, new in zip(rows["old"], rows["new"]))
    ok &= same
    print(f"{run}: {len(rows['new'])} rows, {'identical' if same else 'DIFFERENT'}; last val Dice "
          f"{rows['new'][-1].get('val_dice_global')}" + (f"; new fields (not compared): {', '.join(added)}" if added else ""))
sys.exit(0 if ok else 1)
PY
