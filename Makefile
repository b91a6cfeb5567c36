# hifilight developer commands. `make demo` and `make test` set everything up on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(BIN)/hifilight fit --config configs/demo.yaml --overwrite true
	$(OFFLINE) $(BIN)/hifilight predict --config configs/demo_predict.yaml --overwrite true
	@echo "demo images: outputs/demo/*.png (grid: outputs/demo/grid.png)"

test: $(STAMP)
	$(OFFLINE) $(BIN)/pytest -q -m "not slow"

test-all: $(STAMP)
	$(OFFLINE) $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hifilight tests benchmarks
	$(BIN)/ruff format --check hifilight tests benchmarks

bench: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/train_step.py
	$(OFFLINE) $(BIN)/python benchmarks/stepwise.py

clean:
	rm -rf outputs lightning_logs .pytest_cache .ruff_cache
