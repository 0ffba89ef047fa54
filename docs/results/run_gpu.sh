#!/usr/bin/env bash
# The measured run of docs/results.md, as it was executed on one GPU.
#
# Every model trains in its own process on the same GPU at the same time (the
# semi-CRF sweeps occupy few of the GPU's multiprocessors, so the processes
# overlap), each into its own results directory; then one `run --resume` over
# all of them gathers the finished models into one directory, which retrains
# nothing (every model is finished) and writes the joint metrics.json and
# figures. pytorch-crf trains separately on fewer sequences (its step is a
# Python loop over positions, measured 13.5 s at the spec's size).
#
# Settings come from the environment (defaults: the spec's data size):
#   EPOCHS, ENCODER, DEVICE, NUM_TRAIN, NUM_VAL, NUM_TEST, SEQ_LENGTH, CRF_TRAIN, CRF_VAL, LIMIT_S, WORK, EXTRA
#   (more run flags), GEN_EXTRA (more generate flags, e.g. --content realistic)
set -uo pipefail
B=benchmarks/synthetic_genomics/synthetic_benchmark.py
EPOCHS=${EPOCHS:-2}; ENCODER=${ENCODER:-mamba}; DEVICE=${DEVICE:-cuda}
NUM_TRAIN=${NUM_TRAIN:-1000}; NUM_VAL=${NUM_VAL:-200}; NUM_TEST=${NUM_TEST:-200}; SEQ_LENGTH=${SEQ_LENGTH:-20000}
CRF_TRAIN=${CRF_TRAIN:-160}; CRF_VAL=${CRF_VAL:-50}; LIMIT_S=${LIMIT_S:-480}; WORK=${WORK:-work}; EXTRA=${EXTRA:-}
GEN_EXTRA=${GEN_EXTRA:-}
MODELS=${MODELS:-oracle softmax linear semicrf semicrf_uniform}
mkdir -p "$WORK/logs"

python3 $B generate --output-dir "$WORK/data" --num-train "$NUM_TRAIN" --num-val "$NUM_VAL" --num-test "$NUM_TEST" \
    --seq-length "$SEQ_LENGTH" $GEN_EXTRA > "$WORK/logs/generate.log" 2>&1 || { cat "$WORK/logs/generate.log"; exit 1; }
COMMON="--data-dir $WORK/data --encoder $ENCODER --device $DEVICE --epochs $EPOCHS --log-every 1 --no-progress --threads 3 $EXTRA"

for m in $MODELS; do
    ( s=$(date +%s); timeout "$LIMIT_S" python3 $B run $COMMON --models "$m" --output-dir "$WORK/parts/$m" \
        > "$WORK/logs/$m.log" 2>&1; rc=$?; echo "exit $rc, wall $(( $(date +%s) - s )) s" >> "$WORK/logs/$m.log" ) &
done
( s=$(date +%s); timeout "$LIMIT_S" python3 $B run $COMMON --models pytorch-crf --epochs 1 --max-train "$CRF_TRAIN" \
    --max-val "$CRF_VAL" --output-dir "$WORK/pytorch-crf" > "$WORK/logs/pytorch-crf.log" 2>&1; rc=$?
  echo "exit $rc, wall $(( $(date +%s) - s )) s" >> "$WORK/logs/pytorch-crf.log" ) &
wait

# Gather the finished models (those whose own metrics.json exists) into one directory.
done_models=()
mkdir -p "$WORK/synthetic/checkpoints" "$WORK/synthetic/predictions"
for m in $MODELS; do
    if [ -f "$WORK/parts/$m/metrics.json" ]; then
        done_models+=("$m")
        cp "$WORK/parts/$m/checkpoints/"* "$WORK/synthetic/checkpoints/"
        cp "$WORK/parts/$m/predictions/"* "$WORK/synthetic/predictions/"
    fi
done
if [ ${#done_models[@]} -gt 0 ]; then
    list=$(IFS=,; echo "${done_models[*]}")
    python3 $B run $COMMON --models "$list" --output-dir "$WORK/synthetic" --resume > "$WORK/logs/gather.log" 2>&1
fi
python3 $B compare --results-dir "$WORK/synthetic" "$WORK/pytorch-crf" > "$WORK/logs/compare.log" 2>&1
for f in "$WORK"/logs/*.log; do echo "== $f"; cat "$f"; done
