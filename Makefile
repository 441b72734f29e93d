# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench chaos fuzz clean web

# The chat web app (src/hubbub/web): TypeScript bundled with the JS SDK
# (clients/js/src) by esbuild into src/hubbub/web/static/app.js, which hubbub
# serves at /. Built output is not committed.
WEB        := src/hubbub/web
WEB_BUNDLE := $(WEB)/static/app.js
WEB_DEPS   := $(WEB)/node_modules/.package-lock.json
# The JS/TS client SDK; its tests (node --test) run against real hubbub processes.
SDK        := clients/js
SDK_DEPS   := $(SDK)/node_modules/.package-lock.json

$(STAMP): pyproject.toml setup.py src/hubbub/gateway/_delivery.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "hubbub needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $(WEB_DEPS)

$(WEB_BUNDLE): $(WEB_DEPS) $(WEB)/tsconfig.json $(wildcard $(WEB)/src/*.ts) \
		$(wildcard clients/js/src/*.ts clients/js/src/transport/*.ts)
	cd $(WEB) && npm run --silent build

web: $(WEB_BUNDLE)

$(SDK_DEPS): $(SDK)/package.json $(SDK)/package-lock.json
	cd $(SDK) && npm ci --no-audit --no-fund
	touch $(SDK_DEPS)

run: $(STAMP) $(WEB_BUNDLE)
	$(BIN)/hubbub run

# pytest measures coverage ([tool.coverage.*] in pyproject.toml) of src/hubbub in
# its own process and in the hubbub servers the tests start, and fails the run
# below fail_under. It runs the test files in TEST_WORKERS processes
# (pytest-xdist; each file's tests stay in one process, so a module's server
# is started once): most tests wait on servers, so two workers on two cores
# take well under half the time of one. TEST_WORKERS=0 runs them in pytest's
# own process.
TEST_WORKERS ?= 2
test: $(STAMP) $(WEB_BUNDLE) $(SDK_DEPS)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term:skip-covered
	cd $(SDK) && HUBBUB_BIN=$(CURDIR)/$(BIN)/hubbub npm test

bench: $(STAMP)
	$(BIN)/python bench/fanout.py

# A long chaos run (tests/scaleout/chaos.py): 100,000 messages through
# process kills, Redis and PostgreSQL restarts and cut connections.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --messages 100000

# The hostile-input suite (tests/fuzz) with twenty times its examples.
FUZZ_EXAMPLES ?= 20
fuzz: $(STAMP)
	HUBBUB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -s tests/fuzz --timeout=0

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
	rm -rf $(WEB)/node_modules $(WEB_BUNDLE) $(WEB_BUNDLE).map $(SDK)/node_modules $(SDK)/dist
