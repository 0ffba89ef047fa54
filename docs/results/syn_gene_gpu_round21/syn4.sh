#!/bin/bash
# round 20b: semicrf_gene at the spec's size, bilstm 64 recipe, variants in WORKs of their own, one GPU under MPS.
# usage: bash .gpu/syn4.sh start|wait S|pack   (VARIANTS="name:seeds:flags;..." EPOCHS, TB)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
F=benchmarks/synthetic_genomics/full_run.sh
R="--encoder bilstm --stem conv --features onehot --num-layers 1 --hidden-dim 64 --batch-size 8 --lr 4e-3 \
--warmup-steps 20 --lr-schedule cosine --max-val 50 --log-every 1 --max-duration 1000"
export EPOCHS=${EPOCHS:-5} TIME_BUDGET=${TB:-450} LIMIT_S=1500
IFS=';' read -r -a VS <<< "${VARIANTS:?}"
each() {  # each ARGS...: full_run.sh ARGS for every variant (seeds "1" or "1 2")
  local v name seeds flags s2
  for v in "${VS[@]}"; do IFS=':' read -r name seeds flags <<< "$v"; s2=""; [[ $seeds == *2* ]] && s2=semicrf_gene
    WORK=/root/w_$name MODELS=semicrf_gene SEED2_MODELS="$s2" RECIPE="$R $flags" bash $F "$@"; done; }
case $1 in
start)
  python3 -m pip install -q --no-deps .whl/pytorch_crf-0.7.2-py3-none-any.whl > /dev/null 2>&1; python3 -c "import torchcrf"
  nvidia-cuda-mps-control -d && sleep 1 && python3 -c "import torch; print('mps ok', torch.ones(2, device='cuda').sum().item())"
  python3 -m semicrf.genomics.cli generate --output-dir /root/data --num-train 1000 --num-val 200 --num-test 200 \
    --seq-length 20000 --content realistic --seed 42 | tail -1
  for v in "${VS[@]}"; do mkdir -p /root/w_${v%%:*}; ln -sfn /root/data /root/w_${v%%:*}/data; done
  each start ;;
wait) sleep "$2"; each wait 1; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader ;;
pack) for v in "${VS[@]}"; do n=${v%%:*}; tar cf $OUT/$n.tar -C /root/w_$n parts logs; done ;;
esac
