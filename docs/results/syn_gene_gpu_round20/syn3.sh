#!/bin/bash
# round 20: semicrf_gene at the spec's size, bilstm recipe, 26 states (tail), seeds 1+2 at h64 and seed 1 at h128,
# the oracle beside; processes in their own sessions (outlive the call); MPS when the machine has it.
# usage: bash .gpu/syn3.sh start|wait S|pack|gather
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
F=benchmarks/synthetic_genomics/full_run.sh
R="--encoder bilstm --stem conv --features onehot --num-layers 1 --batch-size 8 --lr 4e-3 --warmup-steps 20 \
--lr-schedule cosine --max-val 50 --log-every 1 --gene-long-runs tail --max-duration 1000"
export EPOCHS=8 TIME_BUDGET=${TB:-1150} LIMIT_S=1500
w1() { WORK=/root/w20a MODELS="oracle semicrf_gene" SEED2_MODELS="semicrf_gene" RECIPE="$R --hidden-dim 64" bash $F "$@"; }
w2() { WORK=/root/w20b MODELS="semicrf_gene" SEED2_MODELS="" RECIPE="$R --hidden-dim 128" bash $F "$@"; }
case $1 in
start)
  python3 -m pip install -q --no-deps .whl/pytorch_crf-0.7.2-py3-none-any.whl > /dev/null 2>&1; python3 -c "import torchcrf"
  if command -v nvidia-cuda-mps-control >/dev/null; then
    nvidia-cuda-mps-control -d && sleep 1 && python3 -c "import torch; print('mps ok', torch.ones(2, device='cuda').sum().item())" \
      || { echo quit | nvidia-cuda-mps-control; echo "mps off"; }
  else echo "no mps"; fi
  mkdir -p /root/w20b; [ -e /root/w20b/data ] || { w1 start; ln -s /root/w20a/data /root/w20b/data; }
  w2 start ;;
wait) w1 wait "$2"; w2 wait 1 | tail -1; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader ;;
pack) w1 pack $OUT; WORK=/root/w20b MODELS="semicrf_gene" SEED2_MODELS="" bash $F pack /tmp/p2 && mv /tmp/p2/semicrf_gene_s1.tar $OUT/h128_semicrf_gene_s1.tar
  for f in /root/w20a/logs/*.log /root/w20b/logs/semicrf*.log; do echo "== $f"; grep -v -i warn $f | tail -4; done > $OUT/logs.txt ;;
gather) w1 gather > $OUT/gather_a.txt 2>&1; tail -20 $OUT/gather_a.txt; cp /root/w20a/histories.json $OUT/hist_a.json
  tar cf $OUT/results_a.tar -C /root/w20a --exclude checkpoints seed1 seed2 ;;
esac
