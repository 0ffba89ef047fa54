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
	$(PY) -m semicrf.genomics.cli generate --output-dir $(DEMO_DATA) --num-train 12 --num-val 3 --num-test 3 \
		--seq-length 20000 --content realistic --overwrite
	$(PY) -m semicrf.genomics.cli run --data-dir $(DEMO_DATA) --output-dir $(DEMO_RESULTS) --encoder bilstm \
		--features kmer --device cpu --epochs 7 --log-every 2 --hidden-dim 16 --num-layers 1 --batch-size 1 \
		--lr 3e-3 --max-duration 500 --threads 1 --overwrite
	$(PY) -m semicrf.genomics.cli compare --results-dir $(DEMO_RESULTS)

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/engine_cpu.py
