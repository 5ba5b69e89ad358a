# The two quick-start commands: `make demo` runs the service, `make test` runs the tests.
# Both create .venv themselves and install Mosquitto (apt-get) when it is missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test test-slow lint bench-ingest bench-archive mosquitto clean

$(BIN)/arros: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

mosquitto:
	@scripts/ensure-mosquitto.sh

demo: $(BIN)/arros mosquitto
	$(BIN)/python examples/factory/run_demo.py

test: $(BIN)/arros mosquitto
	$(BIN)/pytest -q

test-slow: $(BIN)/arros mosquitto
	$(BIN)/pytest -q -m slow

lint: $(BIN)/arros
	$(BIN)/ruff check .

bench-ingest: $(BIN)/arros mosquitto
	$(BIN)/python benchmarks/ingest_filter.py

bench-archive: $(BIN)/arros
	$(BIN)/python benchmarks/archive_write.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
