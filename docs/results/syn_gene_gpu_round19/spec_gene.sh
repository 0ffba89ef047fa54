#!/bin/bash
# semicrf_gene at the spec's size on one GPU in one call: generate, train (time budget), test, oracle beside
# usage: bash .gpu/spec_gene.sh LAYOUT EPOCHS BUDGET_S SEED
L=${1:-tail}; E=${2:-6}; TB=${3:-330}; S=${4:-1}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
python3 -m pip install -q --no-deps .whl/pytorch_crf-0.7.2-py3-none-any.whl 2>&1 | tail -2; python3 -c "import torchcrf; print(torchcrf.__file__)"
python3 -c "import matplotlib, tqdm; print('extras ok')"
B="python3 -m semicrf.genomics.cli"
t0=$SECONDS
$B generate --output-dir /tmp/syn --num-train 1000 --num-val 200 --num-test 200 --seq-length 20000 \
    --content realistic --seed 42 | tail -1
R=$OUT/gene_${L}_s$S
$B run --data-dir /tmp/syn --output-dir $R --encoder bilstm --hidden-dim 64 --num-layers 1 --stem conv \
    --features onehot --max-duration 1000 --batch-size 8 --lr 4e-3 --lr-schedule cosine --warmup-steps 20 \
    --epochs $E --device cuda --models semicrf_gene,oracle --gene-long-runs $L --seed $S --max-val 50 \
    --log-every 1 --no-progress --time-budget semicrf_gene=$TB --time-limit 540 > $OUT/run_${L}_s$S.log 2>&1
echo "run rc=$? $((SECONDS - t0)) s"; grep -v -i warn $OUT/run_${L}_s$S.log | tail -25
tar cf $OUT/ckpt_${L}_s$S.tar -C $R checkpoints && rm -rf $R/checkpoints
nvidia-smi --query-gpu=name,memory.used --format=csv
