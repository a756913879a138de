#!/usr/bin/env bash
# The queue that runs the qata-ssl cells: one cell at a time from /work/ws-ssl/queue.txt (first line popped when
# it starts), code from the snapshot checkout named in snap.txt (PYTHONPATH; cwd outside the repo). Start:
# bash results/qata-ssl/start_queue.sh (sets it up), or cd /work/ws-ssl && nohup bash qrun.sh >> queue.log 2>&1 &
# (touch stop: end after the running cell). A line `lever NAME [SEED]` runs results/levers/NAME.yaml instead: the
# default semi-train at 2 %, seed SEED (1 when not given), with that config on top (run lever-NAME-semi-2pct-sSEED),
# then its test evaluation.
cd /work/ws-ssl
while true; do
  cell=$(head -1 queue.txt); [ -z "$cell" ] && { echo "$(date -Is) queue empty"; break; }
  sed -i 1d queue.txt
  snap=$(cat snap.txt)
  echo "$(date -Is) start $cell (code $(git -C $snap rev-parse --short HEAD))"
  medref() { PYTHONPATH=$snap /work/main/.venv/bin/python -m medref_cli "$@" --workdir /work/ws-ssl; }
  case $cell in
    "lever "*)
      read -r _ lever seed <<< "$cell"; seed=${seed:-1}; run=lever-$lever-semi-2pct-s$seed
      # a run cut off with the machine's session: resumed from its checkpoint (as table1 does), or, with none yet,
      # started again
      again=(); [ -d runs/$run ] && again=(--overwrite); [ -f runs/$run/checkpoint_latest.pt ] && again=(--resume)
      { medref semi-train -d qata -l 2% --seed $seed --config /work/main/results/levers/$lever.yaml --name $run \
          "${again[@]}" --no-progress && medref evaluate $run --split test --no-progress; } >> logs/$run.log 2>&1 ;;
    *)
      medref table1 --profile qata-ssl --pipeline $snap/medref_cli/pipelines/table1.yaml \
        --raw /work/shared/data/qata-cov19 --only $cell > logs/$cell.log 2>&1 ;;
  esac
  echo "$(date -Is) end $cell rc=$?"
  [ -f stop ] && { echo "$(date -Is) stop file"; rm -f stop; break; }
done
