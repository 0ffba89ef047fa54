# The commands of the README: `make demo` (the benchmark at a small size, CPU, minutes), `make test`
# (every test) and `make test-fast` (all but those marked slow). Each installs what it needs into the
# current Python first.
#
# torch, only when `import torch` fails: the CPU build from PyTorch's CPU index (about 0.2 GB), since the
# demo and the tests run on the CPU; when that index cannot be reached, the same version from pip's
# configured index, which for PyPI on Linux x86-64 is the CUDA build (a 0.5 GB wheel and well over 1 GB
# of nvidia-*/cuda-* wheels). `make install TORCH_INDEX=` skips the CPU index; an installed torch is kept.
#
# `make fly-data` imports the AUGUSTUS tutorial's fly genes (needs the Debian packages augustus-doc etc.,
# and the package installed: `make install`); `make gene-finders` runs AUGUSTUS and SNAP on them
# (benchmarks/real_genes/gene_finders.py); `make fly-chains` joins the training and validation loci into
# chains with intergenic filler between them (semicrf-bench chain), for whole-chromosome use.
PY ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
DEMO_DATA ?= data/demo
DEMO_RESULTS ?= results/demo

.PHONY: install install-torch demo test test-fast bench fly-data fly-chains gene-finders

install-torch:
	@if $(PY) -c "import torch" 2>/dev/null; then :; \
	elif [ -n "$(TORCH_INDEX)" ] && $(PY) -m pip install -q --retries 1 --timeout 20 --index-url $(TORCH_INDEX) $(TORCH); then \
		echo "installed $(TORCH), CPU build, from $(TORCH_INDEX)"; \
	else \
		echo "installing $(TORCH) from pip's configured index$(if $(TORCH_INDEX), ($(TORCH_INDEX) failed)); from PyPI on Linux x86-64 that is the CUDA build (over 1.5 GB with its nvidia-* wheels)"; \
		$(PY) -m pip install -q $(TORCH); \
	fi

install: install-torch
	$(PY) -m pip install -q -e '.[test]'

demo: install
	$(PY) -m semicrf.genomics.cli generate --output-dir $(DEMO_DATA) --num-train 12 --num-val 3 --num-test 3 \
		--seq-length 20000 --content realistic --overwrite
	$(PY) -m semicrf.genomics.cli run --data-dir $(DEMO_DATA) --output-dir $(DEMO_RESULTS) --encoder bilstm \
		--features kmer --device cpu --epochs 7 --log-every 2 --hidden-dim 16 --num-layers 1 --batch-size 1 \
		--lr 3e-3 --max-duration 500 --step-budget pytorch-crf=12 --threads 1 --overwrite
	$(PY) -m semicrf.genomics.cli compare --results-dir $(DEMO_RESULTS)

test: install
	$(PY) -m pytest

# Every test not marked slow (multi-process runs, training runs, interpreter sweeps).
test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) benchmarks/engine_cpu.py

# The AUGUSTUS tutorial's D. melanogaster loci (486 training, 100 test), plain or gzipped.
FLY_SRC ?= /usr/share/doc/augustus/tutorial/results
FLY_DATA ?= data/fly
FLY_INSTALL = apt-get install augustus augustus-data augustus-doc snap

fly-data:
	@train=$$(ls $(FLY_SRC)/genes.gb.train $(FLY_SRC)/genes.gb.train.gz 2>/dev/null | head -n 1); \
	test=$$(ls $(FLY_SRC)/genes.gb.test $(FLY_SRC)/genes.gb.test.gz 2>/dev/null | head -n 1); \
	if [ -z "$$train" ] || [ -z "$$test" ]; then \
		echo "fly-data: $(FLY_SRC)/genes.gb.train and genes.gb.test (AUGUSTUS tutorial) are missing; install them with: $(FLY_INSTALL)" >&2; exit 1; fi; \
	$(PY) -m semicrf.genomics.cli import --train "$$train" --test "$$test" --val-fraction 0.1 --seed 42 \
		--output-dir $(FLY_DATA) --overwrite

fly-chains:
	@test -f $(FLY_DATA)/metadata.json || { echo "fly-chains: $(FLY_DATA) is missing; run make fly-data first" >&2; exit 1; }
	$(PY) -m semicrf.genomics.cli chain --data-dir $(FLY_DATA) --output-dir $(FLY_DATA)_chains --overwrite

gene-finders:
	$(PY) benchmarks/real_genes/gene_finders.py --output-dir results/gene_finders --overwrite
