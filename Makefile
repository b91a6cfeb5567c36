# hifilight developer commands. `make demo` and `make test` set everything up on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
# pip's own byte-compilation is single-threaded; compileall on all cores is faster (the demo installs in ~2 min).
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --no-compile
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test test-all lint bench bench-gpu serve toyworld-train toyworld-train-gpu toyworld-train-v2 toyworld-calibrate clean

setup: $(CORE)

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e .
	$(COMPILE)
	touch $@

$(DEV): $(CORE)
	$(PIP_INSTALL) -e '.[dev]'
	$(COMPILE)
	touch $@

demo: $(CORE)
	$(OFFLINE) $(BIN)/hifilight toyworld ablation --config configs/demo.yaml

# the suite, then its numerical tests once more on one thread: BLAS / oneDNN then take other kernels and summation
# orders, so a tolerance fitted to one machine's rounding fails here instead of on a user's CPU
test: $(DEV)
	$(OFFLINE) $(BIN)/pytest -q -rf -m "not slow" --durations=15
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/pytest -q -rf -m "numerical and not slow" -p no:cacheprovider

test-all: $(DEV)
	$(OFFLINE) $(BIN)/pytest -q

lint: $(DEV)
	$(BIN)/ruff check hifilight tests benchmarks serve
	$(BIN)/ruff format --check hifilight tests benchmarks serve

bench: $(DEV)
	$(OFFLINE) $(BIN)/python -m benchmarks.train_step
	$(OFFLINE) $(BIN)/python -m benchmarks.stepwise
	$(OFFLINE) $(BIN)/python -m benchmarks.masks
	$(OFFLINE) $(BIN)/python -m benchmarks.null_text
	$(OFFLINE) $(BIN)/python -m benchmarks.reference_guidance
	$(OFFLINE) $(BIN)/python -m benchmarks.reference_batch
	$(OFFLINE) $(BIN)/python -m benchmarks.lora_step
	$(OFFLINE) $(BIN)/python -m benchmarks.evaluate
	$(OFFLINE) $(BIN)/python -m benchmarks.serve_load
	$(OFFLINE) $(BIN)/python -m benchmarks.scale
	$(OFFLINE) $(BIN)/python -m benchmarks.toysd_step
	$(OFFLINE) $(BIN)/python -m benchmarks.toyworld_fits

# on a machine with a GPU: every stage at SD 1.4 size next to plain loops (benchmarks/results/gpu.json, ~5 min, H200)
bench-gpu: $(DEV)
	$(OFFLINE) $(BIN)/python -m benchmarks.gpu

# the BentoML service on 127.0.0.1:3000: ToySD and the embedded subjects in serve/subjects, the web page at /ui
# (HIFILIGHT_MODEL / HIFILIGHT_SUBJECTS_DIR for real weights; docs/serve.md)
serve: $(DEV)
	$(OFFLINE) BENTOML_DO_NOT_TRACK=True $(BIN)/bentoml serve serve.service:HifiService --host 127.0.0.1 --port 3000

# retrain ToyWorld's models from their seeds and rewrite hifilight/assets/toyworld/ (~1 h 45 min on 2 CPU cores):
# the classifier (ToyDINO) and segmenter (ToySAM), ~40 min, then ToySD from scratch in 65 min (VAE with the
# object-weighted loss, the classifier adapted to its outputs as classifier_toysd, UNet + text encoder; record in
# toysd/training.json).
toyworld-train: $(CORE)
	$(OFFLINE) $(BIN)/hifilight toyworld train models
	$(OFFLINE) $(BIN)/hifilight toyworld train toysd --seed 0

# ToySD v2 on one CUDA GPU (bf16 autocast, batch 256): ToyCLIP, the readers at v2's sizes, then the EMA UNet; writes
# OUT (not the committed folder) with the learning curve in OUT/toysd/training.json. Not yet run on a GPU.
OUT ?= outputs/toysd_gpu
toyworld-train-gpu: $(CORE)
	$(OFFLINE) $(BIN)/hifilight toyworld train toysd2 --device cuda --bf16 true --batch 256 --unet_steps 20000 \
		--lr 1e-3 --clip_batch 512 --curve_every 2500 --curve_images 2 --threads 8 --out $(OUT)

# ToySD v2 on this CPU, continued from the committed resume point (runs/toysd_v2) in outputs/toysd_v2; one thread,
# a checkpoint every 10 minutes, stops itself after 150 minutes (see docs/toyworld.md, "ToySD v2")
toyworld-train-v2: $(CORE)
	mkdir -p outputs/toysd_v2 && [ -f outputs/toysd_v2/checkpoint/state.json ] || cp -r runs/toysd_v2/. outputs/toysd_v2/
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/hifilight toyworld train toysd2 --out outputs/toysd_v2 --resume true \
		--threads 1 --lr 5e-4 --curve_images 2 --stop_after_minutes 150

# the ToyWorld instrument's calibration on the committed weights (floor, oracle, ceilings; JSON)
toyworld-calibrate: $(CORE)
	$(OFFLINE) $(BIN)/hifilight toyworld calibrate --split test --out outputs/toyworld_calibration.json --overwrite true

clean:
	rm -rf outputs lightning_logs .pytest_cache .ruff_cache
