#!/usr/bin/env bash
# Train a candidate ensemble (OUT, default engines/next; RECIPE, default live) in the
# background from a FROZEN copy of the code, with tools/commit_members.py committing each
# finished member (and, at FINAL_AT UTC, the member in progress) so the next session resumes
# from git. Rerunning this script resumes.
#
#   tools/train_background.sh [COMMIT] [FINAL_AT]      e.g. tools/train_background.sh HEAD 22:58
#   OUT=engines/wide RECIPE=wide EPOCHS=24 tools/train_background.sh HEAD 10:40
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
COMMIT=$(git -C "$REPO" rev-parse "${1:-HEAD}")
FINAL_AT=${2:-}
EPOCHS=${EPOCHS:-28}
SRC=/tmp/train-src-${COMMIT:0:10}
OUT=${OUT:-engines/next}
RECIPE=${RECIPE:-live}
WORK=$OUT/work
# The frozen tree: later edits in the checkout cannot change the running job.
[ -d "$SRC" ] || git -C "$REPO" worktree add --detach "$SRC" "$COMMIT" >/dev/null
cd "$REPO"
mkdir -p "$WORK"
echo "$COMMIT" > "$WORK/code_commit"
PYTHONPATH="$SRC" nohup nice -n 15 "$REPO/.venv/bin/python" -m uar_stream.cli train \
    --data ../shared/data/ferplus/train.npz --test ../shared/data/ferplus/publictest.npz \
    --out "$OUT" --work-dir "$WORK" --epochs "$EPOCHS" --recipe "$RECIPE" >> "$WORK/train.log" 2>&1 &
TRAIN_PID=$!
nohup nice -n 10 "$REPO/.venv/bin/python" "$SRC/tools/commit_members.py" --work "$WORK" --out "$OUT" \
    --pid "$TRAIN_PID" --log "$WORK/train.log" ${FINAL_AT:+--final-at "$FINAL_AT"} \
    >> "$WORK/watcher.log" 2>&1 &
WATCH_PID=$!
echo "training pid $TRAIN_PID (log $REPO/$WORK/train.log), watcher pid $WATCH_PID (log $REPO/$WORK/watcher.log), code $COMMIT at $SRC"
