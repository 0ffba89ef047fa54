#!/usr/bin/env bash
# The checks a GPU session owes the code that CPU sessions changed, in two parts that each fit one device
# call (10 minutes):
#   tests  the Triton backend's tests on compiled kernels (the `gpu`-marked ones included), the chromosome
#          decoder's and the encoder's GPU tests (about 5 min on a fresh H200: 258 s for the first two
#          files in round 16, the kernels compiled from scratch);
#   speed  semicrf_gene's step on the fly loci part by part (when data/fly is carried), semicrf_gene's
#          engine call at the spec's size (the 60 ms / 1 GiB target) for its default states and those
#          without the long introns' ends, with the rows the sweeps sent to the exact kernel counted and
#          the step split into its parts, then the engine's speed table, then a fresh semicrf's steps
#          with the rows sent to the exact kernel counted at each (is its slower start those rows?
#          docs/results.md, "Step time");
#   lanes  the chunked log sweep at 44 and 98 labels for several chunk lengths and warp counts, with the
#          registers and spills of each (benchmarks/sweep_lanes.py: is the many-label step slow because
#          its tiles spill? The offline counts, docs/engine_gpu.md "Registers without a GPU", chose the configs);
#   long   one 21 Mbp sequence's log_partition and marginals whole and in windows (semicrf.windows;
#          benchmarks/long_sequence.py), on the GPU and on the host's 16 CPU threads at 1 Mbp.
# Run nothing else on the GPU meanwhile: processes sharing one GPU take turns on it, and every time
# measured beside another process is several times too long (round 16, docs/results.md). Everything it
# prints also goes to $OUT (or ./gpu_checks when OUT is unset).
#
#   bash benchmarks/gpu_checks.sh [tests | speed | lanes | long | all]   # default all (four calls' worth:
#                                                          # run the parts in separate calls); needs torch, triton and a
#                                                          # CUDA GPU; pytest for the tests
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_checks}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())" || exit 1
PART=${1:-all}
case "$PART" in tests|speed|lanes|long|all) ;; *) echo "usage: $0 [tests | speed | lanes | long | all]" >&2; exit 2 ;; esac
t0=$SECONDS
if [ "$PART" = lanes ] || [ "$PART" = all ]; then
    timeout 560 python3 benchmarks/sweep_lanes.py --scan --configs 16x8,8x4,32x16,64x16 --jsonl "$OUT/sweep_lanes.jsonl" > "$OUT/sweep_lanes.txt" 2>&1
    echo "sweep_lanes.py --scan: rc=$?, $((SECONDS - t0)) s"; grep "^|" "$OUT/sweep_lanes.txt"
    [ "$PART" = lanes ] && exit 0
fi
if [ "$PART" = long ] || [ "$PART" = all ]; then
    timeout 300 python3 benchmarks/long_sequence.py --device cuda --json "$OUT/long_cuda.json" > "$OUT/long_cuda.txt" 2>&1
    echo "long_sequence.py (21 Mbp, GPU): rc=$?, $((SECONDS - t0)) s"; grep -v -i warn "$OUT/long_cuda.txt" | tail -7
    timeout 240 python3 benchmarks/long_sequence.py --device cpu --threads 16 --length 1000000 --repeat 0 \
        --json "$OUT/long_cpu.json" > "$OUT/long_cpu.txt" 2>&1
    echo "long_sequence.py (1 Mbp, 16 CPU threads): rc=$?, $((SECONDS - t0)) s"; tail -7 "$OUT/long_cpu.txt"
    [ "$PART" = long ] && exit 0
fi
if [ "$PART" != speed ]; then
timeout 300 python3 -m pytest -q -p no:warnings tests/test_triton.py tests/test_decode_chromosome.py \
    > "$OUT/test_triton_gpu.txt" 2>&1
echo "tests/test_triton.py, tests/test_decode_chromosome.py on the GPU: rc=$? ($(tail -1 "$OUT/test_triton_gpu.txt")), $((SECONDS - t0)) s"
timeout 60 python3 -m pytest -q -p no:warnings tests/test_encoders.py -m gpu > "$OUT/test_encoders_gpu.txt" 2>&1
echo "tests/test_encoders.py -m gpu: rc=$? ($(tail -1 "$OUT/test_encoders_gpu.txt")), $((SECONDS - t0)) s"
fi
[ "$PART" = tests ] && exit 0
if [ -f data/fly/metadata.json ]; then  # carried with the call (make fly-data here first)
    timeout 150 python3 benchmarks/real_genes/gene_step_gpu.py --json "$OUT/gene_step_gpu.json" > "$OUT/gene_step_gpu.txt" 2>&1
    echo "gene_step_gpu.py (semicrf_gene's step on the fly loci): rc=$?, $((SECONDS - t0)) s"; cat "$OUT/gene_step_gpu.txt"
fi
for layout in tail-ends tail; do  # the default 44 states and the 26 without the long introns' ends, side by side
    # 150 s: a fresh machine compiles the kernels for each state count (the 26 states': 23 s for the step,
    # 75 s for the Viterbi in round 17); the 44 states' step alone (no decode) has never given a number yet
    decode=$([ $layout = tail-ends ] && echo --no-decode)
    timeout 150 python3 benchmarks/gene_model_gpu.py --gene-long-runs $layout --repeat 3 $decode \
        --json "$OUT/gene_model_gpu_$layout.json" > "$OUT/gene_model_gpu_$layout.txt" 2>&1
    echo "gene_model_gpu.py --gene-long-runs $layout: rc=$?, $((SECONDS - t0)) s"; tail -3 "$OUT/gene_model_gpu_$layout.txt"
done
timeout 120 python3 benchmarks/engine_gpu.py --sizes small,spec --repeat 5 --check-logz --no-peer \
    > "$OUT/engine_gpu.txt" 2>&1
echo "engine_gpu.py: rc=$?, $((SECONDS - t0)) s"; tail -6 "$OUT/engine_gpu.txt"
timeout 150 python3 benchmarks/synthetic_genomics/steady_steps.py --encoder mamba_stub --models semicrf --count-exact \
    --json "$OUT/steady_steps_stub.json" > "$OUT/steady_steps_stub.txt" 2>&1
echo "steady_steps.py --count-exact: rc=$?, $((SECONDS - t0)) s"; grep -v -i warn "$OUT/steady_steps_stub.txt" | tail -7
