# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned first so pip takes the CPU wheel, never a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ddm run --workspace runs/demo --preset demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The benchmark suite behind BENCHMARKS.md (about 35 minutes on 2 CPU cores).
bench: $(STAMP)
	$(BIN)/ddm evaluate -q -w runs/bench-digits --preset demo --seeds 0,1,2 --num-targets 20 --lds-subsets 50
	mkdir -p benchmarks/results && cp runs/bench-digits/evaluation.md benchmarks/results/digits.md && \
	  cp runs/bench-digits/evaluation.json benchmarks/results/digits.json

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf runs/demo
