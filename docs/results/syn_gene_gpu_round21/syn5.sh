#!/bin/bash
# round 21b: semicrf_gene at the spec's size, one process per variant "name:seed:flags" under MPS, each its own --output-dir.
# usage: bash syn5.sh start|wait S|pack   (VARIANTS, EPOCHS, TB, LIMIT_S; run it from the repository root, .whl/ carried)
# (round 21 ran it with --time-limit 560 in place of LIMIT_S, which its 330-s time budgets never reached)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
R="--encoder bilstm --stem conv --features onehot --num-layers 1 --hidden-dim 64 --batch-size 8 --lr 4e-3 \
--warmup-steps 20 --lr-schedule cosine --max-val 50 --log-every 1 --max-duration 1000 --gene-long-runs tail-ends"
IFS=';' read -r -a VS <<< "${VARIANTS:?}"
case $1 in
start)
  python3 -m pip install -q --no-deps .whl/pytorch_crf-0.7.2-py3-none-any.whl > /dev/null 2>&1
  nvidia-cuda-mps-control -d && sleep 1
  python3 -m semicrf.genomics.cli generate --output-dir /root/data --num-train 1000 --num-val 200 --num-test 200 \
    --seq-length 20000 --content realistic --seed 42 | tail -1
  mkdir -p /root/w5
  for v in "${VS[@]}"; do IFS=':' read -r name seed flags <<< "$v"
    TRITON_CACHE_DIR=/root/w5/cache_$name setsid bash -c "python3 -m semicrf.genomics.cli run --data-dir /root/data \
      --output-dir /root/w5/$name $R $flags --epochs ${EPOCHS:-6} --models semicrf_gene --seed $seed --no-progress \
      --time-budget semicrf_gene=${TB:-345} --time-limit ${LIMIT_S:-1500} > /root/w5/$name.log 2>&1; echo \$? > /root/w5/$name.exit" \
      < /dev/null > /dev/null 2>&1 &
  done; echo "started $(date +%T)" ;;
wait) t0=$SECONDS; while [ $((SECONDS - t0)) -lt "$2" ]; do
    n=0; for v in "${VS[@]}"; do [ -f /root/w5/${v%%:*}.exit ] || n=$((n + 1)); done; [ $n -eq 0 ] && break; sleep 10; done
  for v in "${VS[@]}"; do echo "== ${v%%:*} exit $(cat /root/w5/${v%%:*}.exit 2>/dev/null)"; grep -E "epoch|test|stopped|Error" /root/w5/${v%%:*}.log | tail -5 | cut -c1-180; done ;;
pack) for v in "${VS[@]}"; do n=${v%%:*}; cp /root/w5/$n.log $OUT/; [ -d /root/w5/$n ] && tar cf $OUT/$n.tar -C /root/w5 $n; done ;;
esac
