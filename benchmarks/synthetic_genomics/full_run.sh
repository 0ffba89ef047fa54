#!/usr/bin/env bash
# The benchmark's full comparison in pieces that fit lent GPU calls: every (model, seed) trains in
# its own process, spread over the machine's GPUs, each stopping cleanly after LIMIT_S seconds
# (--time-limit) and continuing exactly where it stopped when the script runs again (--resume).
# Finished models are gathered per seed into $WORK/seed<S> (a `run --resume` over finished
# checkpoints retrains nothing and writes the joint metrics.json and figures), then compared.
#
# Run it again (same WORK, same settings) until every model has finished; between machines,
# carry $WORK/parts (checkpoints: about 12 MB per model at the recipe's size).
#
# Settings from the environment (defaults: the recipe of docs/results.md on realistic content):
#   WORK, LIMIT_S, EPOCHS, MODELS (seed 1), SEED2_MODELS (also with seed 2), CRF_BUDGET
#   (pytorch-crf's --step-budget), GEN (generate flags), RECIPE (run flags shared by all)
set -uo pipefail
B="python3 -m semicrf.genomics.cli"
WORK=${WORK:-work}; LIMIT_S=${LIMIT_S:-480}; EPOCHS=${EPOCHS:-40}
MODELS=${MODELS:-"oracle softmax pytorch-crf linear semicrf semicrf_uniform"}
SEED2_MODELS=${SEED2_MODELS:-"linear semicrf semicrf_uniform"}
CRF_BUDGET=${CRF_BUDGET:-300}
GEN=${GEN:-"--num-train 1000 --num-val 200 --num-test 200 --seq-length 20000 --content realistic --seed 42"}
RECIPE=${RECIPE:-"--encoder mamba --stem conv --features onehot --hidden-dim 128 --num-layers 2 --batch-size 8 \
--lr 2e-3 --warmup-steps 100 --lr-schedule cosine --no-recompute --max-val 50 --log-every 1 --patience 6"}
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$GPUS" -ge 1 ] || GPUS=1
mkdir -p "$WORK/logs" "$WORK/parts"
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$WORK/triton-cache}
# Triton >= 3.4 keeps autotuning results on disk with this; the Mamba kernels' autotuning took the
# first ~160 s of every process in the recipe search. WARMUP=1 tunes once in one process (one step
# of semicrf on 8 sequences) before the others start, so that they read the results instead of all
# tuning at once on a shared GPU (not yet measured: try it with a short LIMIT_S first).
export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING:-1}
WARMUP=${WARMUP:-0}

[ -f "$WORK/data/metadata.json" ] || $B generate --output-dir "$WORK/data" $GEN > "$WORK/logs/generate.log" 2>&1 \
    || { cat "$WORK/logs/generate.log"; exit 1; }

if [ "$WARMUP" = 1 ]; then
    $B run --data-dir "$WORK/data" --output-dir "$WORK/warmup" $RECIPE --epochs 1 --models semicrf --max-train 8 \
        --max-val 2 --max-test 2 --no-progress --overwrite > "$WORK/logs/warmup.log" 2>&1
fi

jobs=()
for m in $MODELS; do jobs+=("$m 1"); done
for m in $SEED2_MODELS; do jobs+=("$m 2"); done
i=0
for job in "${jobs[@]}"; do
    set -- $job; m=$1; s=$2; dir="$WORK/parts/${m}_s$s"
    resume=(); [ -d "$dir/checkpoints" ] && resume=(--resume)
    budget=(); [ "$m" = pytorch-crf ] && budget=(--step-budget "pytorch-crf=$CRF_BUDGET")
    ( CUDA_VISIBLE_DEVICES=$((i % GPUS)) $B run --data-dir "$WORK/data" --output-dir "$dir" $RECIPE --epochs "$EPOCHS" \
        --models "$m" --seed "$s" --time-limit "$LIMIT_S" --no-progress "${budget[@]}" "${resume[@]}" \
        >> "$WORK/logs/${m}_s$s.log" 2>&1; echo "exit $?" >> "$WORK/logs/${m}_s$s.log" ) &
    i=$((i + 1))
done
wait

# Gather each seed's finished models (those with their own metrics.json) and compare.
dirs=()
for s in 1 2; do
    done_models=()
    for job in "${jobs[@]}"; do
        set -- $job
        [ "$2" = "$s" ] && [ -f "$WORK/parts/$1_s$s/metrics.json" ] && done_models+=("$1")
    done
    [ ${#done_models[@]} -gt 0 ] || continue
    out="$WORK/seed$s"; mkdir -p "$out/checkpoints" "$out/predictions"
    for m in "${done_models[@]}"; do
        cp "$WORK/parts/${m}_s$s/checkpoints/"* "$out/checkpoints/"
        cp "$WORK/parts/${m}_s$s/predictions/"* "$out/predictions/"
    done
    list=$(IFS=,; echo "${done_models[*]}")
    budget=(); case ",$list," in *,pytorch-crf,*) budget=(--step-budget "pytorch-crf=$CRF_BUDGET") ;; esac
    $B run --data-dir "$WORK/data" --output-dir "$out" $RECIPE --epochs "$EPOCHS" --models "$list" --seed "$s" \
        --no-progress --resume "${budget[@]}" > "$WORK/logs/gather_s$s.log" 2>&1 && dirs+=("$out")
done
[ ${#dirs[@]} -gt 0 ] && $B compare --results-dir "${dirs[@]}"
for f in "$WORK"/logs/*_s*.log; do echo "== $f"; grep -E "epoch|stopped|test|exit" "$f" | tail -3; done
