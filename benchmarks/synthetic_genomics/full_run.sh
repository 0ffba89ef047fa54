#!/usr/bin/env bash
# The benchmark's full comparison, in pieces that fit lent GPU calls: every (model, seed) trains in
# its own process, spread over the machine's GPUs; finished models are gathered per seed into
# $WORK/seed<S> (a `run --resume` over finished checkpoints retrains nothing and writes the joint
# metrics.json and figures), then compared.
#
#   full_run.sh               start, wait for every process, gather (one long call or a normal machine)
#   full_run.sh start         generate the data if missing, start (or resume) every unfinished process
#                             in its own session (setsid), return at once
#   full_run.sh wait SECONDS  wait until no process is running or SECONDS have passed; print progress
#                             (a job that `start` did not start, or whose process is gone without an
#                             exit status, shows as "not running" and is not waited for)
#   full_run.sh gather        gather the finished models per seed, compare, and write
#                             $WORK/histories.json (every model's validation curve)
#   full_run.sh pack DIR      each job's $WORK/parts/<model>_s<seed> as one file DIR/<model>_s<seed>.tar
#                             (about 12 MB at the recipe's size): what to bring back from a lent machine,
#                             whose $OUT returned the checkpoint folders themselves as "(depth)", not at all
#   full_run.sh unpack DIR    the reverse, before `start` on a fresh machine (an existing part is kept
#                             unless its tar is newer)
#   full_run.sh autotune-save FILE.tar
#                             the Triton autotuning results of this machine's runs (a few KB of
#                             *.autotune.json); with AUTOTUNE_TAR=FILE.tar, `start` unpacks them
#                             into the cache first, so that a fresh machine of the same kind and
#                             Triton skips the benchmarking (kernels whose configs carry pre-hooks
#                             are still tuned: Triton does not cache those)
#
# Lent machines stay up only while a call is in flight, and a process that began its own session
# outlives the call that started it: `start` then `wait 570` in the first call, `wait 570` in the
# next ones, `gather` at the end. Each process stops cleanly after LIMIT_S seconds (--time-limit,
# last checkpoint written); running the script again (same WORK, same settings) resumes it exactly.
# Between machines, `pack` $WORK/parts into $OUT at the end of a call and `unpack` it before the
# next `start` (checkpoints: about 12 MB per model at the recipe's size).
#
# Settings from the environment (defaults: the first full run of docs/results.md, realistic content):
#   WORK, LIMIT_S (1500), EPOCHS (24), MODELS (seed 1), SEED2_MODELS (also with seed 2), TIME_BUDGET
#   (each trained model's --time-budget in seconds, 1250; empty: none), CRF_BUDGET (pytorch-crf's
#   --step-budget, unset: none), GEN (generate flags), RECIPE (run flags shared by all), DEVICES (the
#   GPU indices to spread the processes over, e.g. "1"; default: every GPU of the machine)
set -uo pipefail
B="python3 -m semicrf.genomics.cli"
WORK=${WORK:-work}; LIMIT_S=${LIMIT_S:-1500}; EPOCHS=${EPOCHS:-24}
MODELS=${MODELS:-"oracle softmax pytorch-crf linear semicrf semicrf_uniform"}
SEED2_MODELS=${SEED2_MODELS-"linear semicrf semicrf_uniform"}  # set it empty for one seed only
CRF_BUDGET=${CRF_BUDGET:-}; TIME_BUDGET=${TIME_BUDGET-1250}  # set it empty for no time budget
GEN=${GEN:-"--num-train 1000 --num-val 200 --num-test 200 --seq-length 20000 --content realistic --seed 42"}
RECIPE=${RECIPE:-"--encoder mamba --stem conv --features onehot --hidden-dim 128 --num-layers 2 --batch-size 8 \
--lr 2e-3 --warmup-steps 100 --lr-schedule cosine --no-recompute --max-val 50 --log-every 1 --patience 8"}
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$NGPU" -ge 1 ] || NGPU=1
read -r -a DEVS <<< "${DEVICES:-$(seq -s ' ' 0 $((NGPU - 1)))}"; GPUS=${#DEVS[@]}
mkdir -p "$WORK/logs" "$WORK/parts"
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$WORK/triton-cache}
# Triton >= 3.4 keeps autotuning results on disk with this: the Mamba kernels' autotuning took the
# first ~160 s of every process in the recipe search, and a resumed process on the same machine
# reads the results instead.
export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING:-1}

jobs=()
for m in $MODELS; do jobs+=("$m 1"); done
for m in $SEED2_MODELS; do jobs+=("$m 2"); done

budgets() {  # the --step-budget / --time-budget flags for a comma-separated model list
    local list=",$1," steps="" secs=""
    case "$list" in *,pytorch-crf,*) [ -n "$CRF_BUDGET" ] && steps="pytorch-crf=$CRF_BUDGET" ;; esac
    if [ -n "$TIME_BUDGET" ]; then
        for m in ${1//,/ }; do [ "$m" = oracle ] || secs="$secs${secs:+,}$m=$TIME_BUDGET"; done
    fi
    [ -n "$steps" ] && echo -n " --step-budget $steps"
    [ -n "$secs" ] && echo -n " --time-budget $secs"
    echo
}

autotune_save() {
    local out=${1:?give the .tar file to write}
    (cd "$TRITON_CACHE_DIR" 2>/dev/null && find . -name '*.autotune.json' | tar cf - -T -) > "$out.tmp" \
        && mv "$out.tmp" "$out" && echo "$(tar tf "$out" | wc -l) autotuning results in $out"
}

start() {
    if [ -n "${AUTOTUNE_TAR:-}" ] && [ -f "$AUTOTUNE_TAR" ]; then
        mkdir -p "$TRITON_CACHE_DIR" && tar xf "$AUTOTUNE_TAR" -C "$TRITON_CACHE_DIR" \
            && echo "autotuning results from $AUTOTUNE_TAR: $(tar tf "$AUTOTUNE_TAR" | wc -l) files"
    fi
    [ -f "$WORK/data/metadata.json" ] || $B generate --output-dir "$WORK/data" $GEN > "$WORK/logs/generate.log" 2>&1 \
        || { cat "$WORK/logs/generate.log"; exit 1; }
    local i=0 m s dir resume
    for job in "${jobs[@]}"; do
        set -- $job; m=$1; s=$2; dir="$WORK/parts/${m}_s$s"
        i=$((i + 1))
        [ -f "$dir/metrics.json" ] && continue  # finished
        resume=""; [ -d "$dir/checkpoints" ] && resume="--resume"
        rm -f "$WORK/logs/${m}_s$s.exit"
        CUDA_VISIBLE_DEVICES=${DEVS[$(((i - 1) % GPUS))]} setsid bash -c "$B run --data-dir '$WORK/data' --output-dir '$dir' \
            $RECIPE --epochs $EPOCHS --models $m --seed $s --time-limit $LIMIT_S --no-progress $(budgets "$m") $resume \
            >> '$WORK/logs/${m}_s$s.log' 2>&1; echo \$? > '$WORK/logs/${m}_s$s.exit'" < /dev/null > /dev/null 2>&1 &
        echo $! > "$WORK/logs/${m}_s$s.pid"
    done
    echo "started at $(date +%T): ${#jobs[@]} jobs on GPU(s) ${DEVS[*]} in $WORK"
}

state() {  # a job's state: its exit status, "running", or "not running" (never started here, or lost)
    local base="$WORK/logs/$1_s$2"
    if [ -f "$base.exit" ]; then cat "$base.exit"
    elif [ -f "$base.pid" ] && kill -0 "$(cat "$base.pid")" 2>/dev/null; then echo running
    else echo "not running"; fi
}

progress() {
    local m s f
    for job in "${jobs[@]}"; do
        set -- $job; m=$1; s=$2; f="$WORK/logs/${m}_s$s.log"
        printf '%-22s %s | %s\n' "${m}_s$s" "$(state "$m" "$s")" \
            "$(grep -E 'epoch|stopped|test boundary|Error|error' "$f" 2>/dev/null | tail -1 | cut -c1-150)"
    done
}

wait_for() {
    local limit=$1 t0=$SECONDS left
    while [ $((SECONDS - t0)) -lt "$limit" ]; do
        left=0
        for job in "${jobs[@]}"; do set -- $job; [ "$(state "$1" "$2")" = running ] && left=$((left + 1)); done
        [ "$left" -eq 0 ] && break
        sleep 10
    done
    echo "== $(date +%T), after $((SECONDS - t0)) s"
    progress
}

pack() {
    local out=${1:?give the folder to write the tars to} m s n=0
    mkdir -p "$out"
    for job in "${jobs[@]}"; do
        set -- $job; m=$1; s=$2
        [ -d "$WORK/parts/${m}_s$s" ] || continue
        tar cf "$out/${m}_s$s.tar.tmp" -C "$WORK/parts" "${m}_s$s" && mv "$out/${m}_s$s.tar.tmp" "$out/${m}_s$s.tar" \
            && n=$((n + 1))
    done
    echo "packed $n part(s) into $out"
}

unpack() {
    local dir=${1:?give the folder that holds the tars of pack} m s n=0
    mkdir -p "$WORK/parts"
    for job in "${jobs[@]}"; do
        set -- $job; m=$1; s=$2
        [ -f "$dir/${m}_s$s.tar" ] || continue
        tar xf "$dir/${m}_s$s.tar" -C "$WORK/parts" --keep-newer-files 2>/dev/null && n=$((n + 1))
    done
    echo "unpacked $n part(s) into $WORK/parts"
}

gather() {
    local dirs=() s m done_models list
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
        $B run --data-dir "$WORK/data" --output-dir "$out" $RECIPE --epochs "$EPOCHS" --models "$list" --seed "$s" \
            --no-progress --resume $(budgets "$list") > "$WORK/logs/gather_s$s.log" 2>&1 && dirs+=("$out") \
            || tail -5 "$WORK/logs/gather_s$s.log"
    done
    python3 - "$WORK" <<'EOF'
import json, sys, pathlib, torch
work = pathlib.Path(sys.argv[1])
curves = {}
for last in sorted(work.glob("parts/*/checkpoints/*_last.pt")):
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    curves[last.parent.parent.name] = {"history": ckpt.get("history"), "training_time_s": ckpt.get("training_time_s"),
                                       "global_step": ckpt.get("global_step"), "stopped_by": ckpt.get("stopped_by")}
(work / "histories.json").write_text(json.dumps(curves, indent=1))
EOF
    [ ${#dirs[@]} -gt 0 ] && $B compare --results-dir "${dirs[@]}"
}

case "${1:-all}" in
    start) start ;;
    wait) wait_for "${2:?give the seconds to wait}" ;;
    gather) gather ;;
    autotune-save) autotune_save "${2:-}" ;;
    pack) pack "${2:-}" ;;
    unpack) unpack "${2:-}" ;;
    all) start; wait_for 100000000; gather ;;
    *) echo "usage: $0 [start | wait SECONDS | gather | pack DIR | unpack DIR | autotune-save FILE.tar]" >&2; exit 2 ;;
esac
