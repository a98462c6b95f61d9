# facedeg + hifacegan. `make demo` and `make test` work on a fresh clone (they create .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test bench bench-build bench-train lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Light install: the facedeg engine and CLI only (no torch).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests need. torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[train,dask,faces,onnx,dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/facedeg recipes
	$(BIN)/facedeg preview --recipe mixed --n 8 --seed 0 --out demo/preview.png
	@if $(BIN)/facedeg build --help >/dev/null 2>&1; then \
		$(BIN)/facedeg build --recipe mixed --out demo/data --size 256 --shard-size 16 --seed 0 --overwrite && \
		$(BIN)/facedeg verify demo/data && $(BIN)/facedeg inspect demo/data; fi
	@echo "demo written to demo/ (preview.png, data/)"

test: install-dev
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python benchmarks/bench_degrade.py
	$(BIN)/python benchmarks/bench_build.py
	$(BIN)/python benchmarks/bench_train.py

lint: install-dev
	$(BIN)/ruff check facedeg hifacegan cli tests benchmarks

clean:
	rm -rf demo .pytest_cache .hypothesis build *.egg-info
