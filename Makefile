# relaytrain developer entry points. The README quickstart is `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_HOME := $(CURDIR)/.cdk-home
# nothing leaves the machine: no CDK CLI telemetry (notices are off in cdk.json)
export CDK_DISABLE_CLI_TELEMETRY := true
CDK_CLI := node_modules/.bin/cdk
CHECKOV := .venv-checkov/bin/checkov

.PHONY: setup demo test bench clean

setup: $(STAMP) $(CDK_CLI) $(CHECKOV)

# the CDK CLI pinned in package-lock.json (`npx cdk ...`)
$(CDK_CLI): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(CDK_CLI)

# checkov in its own environment: its pins would fight the main venv's
$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q -r requirements-checkov.txt
	touch $(CHECKOV)

$(STAMP): requirements-dev.txt pyproject.toml runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e runtime -e .
	touch $(STAMP)

# The main job: train the tiny demo blueprint end to end on this machine, then synthesize
# every blueprint's templates into review/ for reading without a cloud account.
demo: $(STAMP)
	$(VENV)/bin/relaytrain run blueprints/tiny-gpt-lambda-steps.yaml --local --store file://$(CURDIR)/runs/demo
	$(VENV)/bin/relaytrain synth --out review

# lint first (rules in pyproject.toml's [tool.ruff]): any finding fails the target before a test runs
test: $(STAMP) $(CDK_CLI) $(CHECKOV)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .venv-checkov node_modules runs review cdk.out .pytest_cache
