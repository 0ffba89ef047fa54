# The two commands of the README: `make demo` (the benchmark at a small size, CPU, minutes)
# and `make test`. Both install what they need into the current Python first.
PY ?= python3
DEMO_DATA ?= data/demo
DEMO_RESULTS ?= results/demo

.PHONY: install demo test bench

install:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'

demo: install
	$(PY) -m semicrf.genomics.cli generate --output-dir $(DEMO_DATA) --num-train 48 --num-val 12 --num-test 12 \
		--seq-length 4000 --overwrite
	$(PY) -m semicrf.genomics.cli run --data-dir $(DEMO_DATA) --output-dir $(DEMO_RESULTS) --encoder mamba_stub \
		--device cpu --epochs 4 --log-every 1 --hidden-dim 32 --num-layers 1 --batch-size 8 --max-duration 300 \
		--overwrite
	$(PY) -m semicrf.genomics.cli compare --results-dir $(DEMO_RESULTS)

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/engine_cpu.py
