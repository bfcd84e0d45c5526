# Everything a fresh machine with only Python needs: `make test`, `make devnet`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SRC := muxernode consensus storage p2p devnet bench tests

.PHONY: install lint test cov devnet bench fmt clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/mypy $(SRC)

# Two workers, one test file each at a time: most tests wait on block slots or daemons,
# so the suite takes ~6 min instead of ~10 on a 2-core machine.
test: lint
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --cov=muxernode --cov=consensus --cov=storage --cov=p2p --cov-report= $(PYTEST_ARGS)
	@echo "== ledger line coverage (target >= 90%) =="
	$(BIN)/python -m coverage report --include='muxernode/ledger.py,muxernode/ops.py,muxernode/state.py' --fail-under=90
	@echo "== whole project coverage =="
	$(BIN)/python -m coverage report --skip-empty | grep TOTAL

devnet: $(STAMP)
	$(BIN)/python -m devnet up $(DEVNET_ARGS)

# Each benchmark prints its figures next to the raw verify rate of the same run.
bench: $(STAMP)
	$(BIN)/python -m bench.ledger
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m bench.node
	$(BIN)/python -m bench.network
	$(BIN)/python -m bench.relay
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.subscriptions
	$(BIN)/python -m bench.web
	$(BIN)/python -m bench.snapshot
	$(BIN)/python -m bench.statesync
	$(BIN)/python -m bench.prune
	$(BIN)/python -m bench.fuzz
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.sim
	$(BIN)/python -m bench.widearea
	$(BIN)/python -m bench.society

fmt: $(STAMP)
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

clean:
	rm -rf $(VENV) .devnet build *.egg-info .coverage
