# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench chaos clean

$(STAMP): pyproject.toml setup.py src/hubbub/gateway/_delivery.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "hubbub needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hubbub run

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/fanout.py

# A long chaos run (tests/scaleout/chaos.py): 100,000 messages through
# process kills, Redis and PostgreSQL restarts and cut connections.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --messages 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
