# fakelens: `make up` starts the embedded CPU stack, `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=
MODEL_FLAGS := $(if $(MODEL),--model $(MODEL),)
export FAKELENS_DATA ?= $(abspath ../shared/data)
export PYTHONPATH := $(CURDIR)

.PHONY: deps up check lint test compose-test k8s train finetune sweep tune evaluate export bench pdq scan-check soak chaos fuzz mutate push-dashboards dashboards clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt requirements-nodeps.txt gateway/requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

# Debian packages: prometheus (both), chromium (page test), docker-compose (compose file validation),
# postgresql (tests start a throwaway cluster; `make up` uses SQLite).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
define apt_install
	@missing=""; for p in $(1); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing with apt:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
endef

# The Docker engine (Debian's docker.io; its dockerd is in /usr/sbin) and mmdebstrap for the deployment test's base image.
define docker_install
	@command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null || { echo "installing with apt: docker.io mmdebstrap"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io mmdebstrap; }
endef

# PostgreSQL's binaries are not on PATH (/usr/lib/postgresql/<version>/bin): checked by path.
define pg_install
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "installing with apt: postgresql"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; }
endef

deps: $(VENV)/.deps  ## Python packages into .venv

up: deps  ## the embedded stack: tritonserver + gateway + prometheus on this machine (Ctrl-C stops it)
	$(call apt_install,prometheus nginx)
	$(PY) -m stack.launch

check: deps  ## the unit tier (under a minute): tests/unit, no started processes
	$(PY) -m pytest -q tests/unit

lint: deps  ## ruff, configured in pyproject.toml
	$(PY) -m ruff check .

test: deps  ## every test, starting the real processes on free loopback ports (and the compose deployment, below)
	$(call apt_install,prometheus nginx chromium docker-compose)
	$(pg_install)
	$(docker_install)
	$(PY) -m pytest -q tests

compose-test: deps  ## docker-compose -f docker-compose.cpu.yml up for real, on stand-in images built here (root; about 7-8 min)
	$(call apt_install,docker-compose)
	$(docker_install)
	$(PY) -m pytest -q -s tests/stack/test_compose_up.py

train: deps  ## all three models (MODEL=baseline_cnn|tuned_cnn|resnet50 for one; SET="key=value ..." overrides the recipe)
	$(PY) -m training.train $(MODEL_FLAGS) $(foreach s,$(SET),--set $(s))

finetune: deps  ## fine-tune the served models on degraded images (MODEL= for one), then `make export evaluate`
	$(PY) -m training.train --finetune $(MODEL_FLAGS) $(foreach s,$(SET),--set $(s))

sweep: deps  ## recipe variants of MODEL side by side (a GPU), best by validation F1: VARIANTS="seed=2 lr=2e-3,shift=2" DEADLINE=s
	$(PY) -m training.sweep --model $(MODEL) $(foreach v,$(VARIANTS),--variant $(v)) $(if $(DEADLINE),--deadline $(DEADLINE),)

tune: deps  ## the Optuna study for tuned_cnn (resumes; TRIALS=, TIMEOUT= seconds)
	$(PY) -m training.tune --trials $(or $(TRIALS),24) $(if $(TIMEOUT),--timeout $(TIMEOUT),)

export: deps  ## TorchScript + config.pbtxt into model_repository/
	$(PY) -m training.export $(MODEL_FLAGS)

evaluate: deps  ## the committed models: test split, verdict rule, real-world set, perturbations, watermark margins -> training/results/
	$(PY) -m training.evaluate
	$(PY) -m training.perturb
	$(PY) -m training.watermarks

bench: deps  ## stack vs in-process ceiling vs seed-style server at concurrency 1/4/16/64, and the batch path -> bench/results/serving.*
	$(PY) -m bench.serving $(if $(SECONDS_PER_LEVEL),--seconds $(SECONDS_PER_LEVEL),)

pdq: deps  ## PDQ distances on the dev set (resizes, recompression, crops, unrelated pairs), a bank of 1M hashes (import, take-up, memory, query) -> bench/results/pdq.json
	$(PY) -m bench.pdq

scan-check: deps  ## fakelens scan of 2,000 test images killed half-way and resumed -> bench/results/resume.json
	$(PY) -m bench.resume

soak: deps  ## 10 minutes at concurrency 8: errors and memory growth -> bench/results/soak.*
	$(PY) -m bench.soak

chaos: deps  ## Triton stopped, a gunicorn worker killed, a model unloaded, the database locked, all under load -> bench/results/chaos.json
	$(PY) -m bench.chaos

fuzz: deps  ## 10,000 fuzzed cases: uploads and the reviewer endpoints, against real stacks -> bench/results/fuzz.json
	$(PY) -m bench.fuzz

mutate: deps  ## mutation testing (mutmut, [tool.mutmut] in pyproject.toml): the core's verdict, judge, known images, upload reading, provenance vs tests/unit (JOBS=2)
	rm -rf mutants
	time env -u PYTHONPATH FAKELENS_REALWORLD=$(abspath ../shared/realworld-dev) $(VENV)/bin/mutmut run --max-children $(or $(JOBS),2)
	@mkdir -p .cache && $(VENV)/bin/mutmut results --all true > .cache/mutmut-results.txt
	@echo "every mutant's outcome: .cache/mutmut-results.txt; survivors: \`mutmut show NAME\`, the equivalent ones in tests/mutants-equivalent.md"

clean:  ## logs and caches; never .data/ (the scan records, reviews and banks of `make up`)
	rm -rf .run .cache

push-dashboards: deps  ## push dashboard/grafana/dashboards to GRAFANA_URL with GRAFANA_TOKEN
	$(PY) dashboard/push.py

dashboards: deps  ## regenerate the dashboard JSON from dashboard/build_dashboards.py (and the k8s ConfigMaps)
	$(PY) dashboard/build_dashboards.py
	$(PY) deploy/k8s/generate.py

k8s: deps  ## regenerate deploy/k8s/base/generated/ (dashboards, proxy config), then build both overlays
	$(PY) deploy/k8s/generate.py
	for o in gpu cpu cpu-postgres; do kubectl kustomize deploy/k8s/overlays/$$o > /dev/null || exit 1; done
