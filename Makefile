# chaingraph-gw developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ./var

.PHONY: install run test test-unit test-conformance bench lint clean services services-down services-reset deploy-deps

install: $(VENV)/.installed conformance/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# compat mode puts the checkout on sys.path, so twistd finds twisted/plugins/ here.
	$(BIN)/pip install -q -e '.[test,deploy]' --config-settings editable_mode=compat
	touch $@

conformance/node_modules/.installed: conformance/package-lock.json
	cd conformance && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.installed
	CHAINGRAPH_DATA_DIR=$${CHAINGRAPH_DATA_DIR:-$(DATA)} AUTH_ENABLED=$${AUTH_ENABLED:-false} \
		$(BIN)/twistd -n --pidfile= chaingraph-gw

# Everything: trial unit + integration tests, then the Node conformance suite; ends with
# one line "N passed, N failed" and a non-zero exit status if anything failed. PostgreSQL and
# Kafka are started (or reused) on 127.0.0.1 unless DATABASE_URL / KAFKA_BROKERS are given.
test: install deploy-deps
	@if [ -z "$$DATABASE_URL" ] || [ -z "$$KAFKA_BROKERS" ]; then bash scripts/services/services.sh up; fi
	DATABASE_URL=$${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/chaingraph} \
		KAFKA_BROKERS=$${KAFKA_BROKERS:-127.0.0.1:9092} CHAINGRAPH_CHAOS_TESTS=$${CHAINGRAPH_CHAOS_TESTS:-1} \
		$(BIN)/python scripts/run_tests.py

# nginx (+ shellcheck) for the deployment tests; best effort: those tests skip without it.
deploy-deps:
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light shellcheck \
	      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null \
	      || echo "nginx not installed: deployment tests will be skipped"; \
	  else echo "nginx not installed: deployment tests will be skipped"; fi; fi

# PostgreSQL (127.0.0.1:5432, db chaingraph) and Kafka (127.0.0.1:9092) for development and tests.
services:
	bash scripts/services/services.sh up

services-down:
	bash scripts/services/services.sh down

services-reset:
	bash scripts/services/services.sh reset

test-unit: $(VENV)/.installed
	$(BIN)/python -m twisted.trial --reactor=asyncio tests

test-conformance: install
	cd conformance && npm test

bench: install
	node bench/bench.mjs

lint: $(VENV)/.installed
	$(BIN)/ruff check chaingraph_gw tests twisted scripts
	@if command -v shellcheck >/dev/null; then shellcheck docker/entrypoint.sh scripts/services/*.sh; fi

clean:
	rm -rf $(VENV) conformance/node_modules _trial_temp* bench/results
