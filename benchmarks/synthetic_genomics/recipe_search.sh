#!/usr/bin/env bash
# One GPU call of the recipe search: realistic data at the spec's size, then every recipe of
# RECIPES (one line each: NAME GPU ARGS...) trained side by side by recipe_search.py for
# LIMIT_S seconds. Curves land in $RESULTS/<name>.json, logs in $RESULTS/<name>.log.
set -uo pipefail
here=$(dirname "$0")
WORK=${WORK:-/tmp/recipes}; RESULTS=${RESULTS:-$WORK/results}; LIMIT_S=${LIMIT_S:-400}
RECIPES=${RECIPES:-$here/recipes.txt}
mkdir -p "$RESULTS"
[ -f "$WORK/data/metadata.json" ] || python3 -m semicrf.genomics.cli generate --output-dir "$WORK/data" \
    --num-train 1000 --num-val 200 --num-test 200 --seq-length 20000 --content realistic --seed 42 > /dev/null
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$WORK/triton-cache}
while read -r name gpu args; do
    case "$name" in ''|'#'*) continue ;; esac
    CUDA_VISIBLE_DEVICES=$gpu python3 "$here/recipe_search.py" --data-dir "$WORK/data" \
        --output "$RESULTS/$name.json" --time-limit "$LIMIT_S" $args > "$RESULTS/$name.log" 2>&1 &
done < "$RECIPES"
wait
for f in "$RESULTS"/*.log; do echo "== $f"; grep -v Warning "$f" | tail -4; done
