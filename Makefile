# The two quick-start commands: `make demo` runs `arros demo` (embedded broker: nothing else to install),
# `make test` runs the tests (tests/unit, tests/integration, tests/faults; not the slow ones) and prints how
# long they took; `make test-fast` runs tests/unit alone (no broker, no subprocess), the inner loop. They
# create .venv themselves; `make test` installs Mosquitto and Chromium (apt-get) when they are missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_ARGS ?=          # e.g. make demo DEMO_ARGS="--seconds 30 --rate 10"

.PHONY: demo test test-fast test-slow faults lint bench bench-quick bench-ingest bench-archive bench-plc bench-windows \
	bench-brokers bench-decode bench-durability mosquitto azurite chromium spb-venv sparkplug-proto flight-sql-proto clean

$(BIN)/arros: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

mosquitto:
	@scripts/ensure-mosquitto.sh

# Azurite (npm) into .azurite/: the Azure Blob server of the az:// archive upload tests
azurite:
	@scripts/ensure-azurite.sh

# Debian's chromium + chromium-driver: the web console's browser tests (tests/integration/test_web_browser.py)
chromium:
	@scripts/ensure-chromium.sh

# mqtt-spb-wrapper (the independent Sparkplug B edge node of the tests) in a venv of its own
spb-venv:
	@scripts/ensure-spb-venv.sh .venv-spb

# Regenerate arros_mqtt/vendor/sparkplug_b_pb2.py from sparkplug_b.proto (protoc ships in grpcio-tools)
sparkplug-proto: $(BIN)/arros
	$(BIN)/pip install --quiet 'grpcio-tools>=1.85.1'
	cd arros_mqtt/vendor && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. sparkplug_b.proto

# Regenerate arros_mqtt/vendor/FlightSql_pb2.py from the Arrow project's FlightSql.proto (the Flight SQL endpoint)
flight-sql-proto: $(BIN)/arros
	$(BIN)/pip install --quiet 'grpcio-tools>=1.85.1'
	cd arros_mqtt/vendor && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. FlightSql.proto

demo: $(BIN)/arros
	$(BIN)/arros demo $(DEMO_ARGS)

# `timed CMD`: run CMD, then print "tests took Ns" whatever its outcome, and exit with its status
timed = start=$$(date +%s); $(1); status=$$?; echo "tests took $$(( $$(date +%s) - start ))s"; exit $$status

test: $(BIN)/arros mosquitto azurite chromium spb-venv
	@$(call timed,$(BIN)/pytest -q)

test-fast: $(BIN)/arros
	@$(call timed,$(BIN)/pytest -q tests/unit)

test-slow: $(BIN)/arros mosquitto azurite spb-venv
	$(BIN)/pytest -q -m slow

# Long fault runs (kill -9 at 10k msg/s, several restarts): the slow-marked tests of tests/faults
faults: $(BIN)/arros mosquitto
	$(BIN)/pytest -q -m slow tests/faults -s

lint: $(BIN)/arros
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The whole suite (README "Performance"); ARGS="--json bench.json" etc. are passed on
bench: $(BIN)/arros mosquitto
	$(BIN)/arros bench $(ARGS)

bench-quick: $(BIN)/arros mosquitto
	$(BIN)/arros bench --quick $(ARGS)

bench-ingest: $(BIN)/arros mosquitto
	$(BIN)/python benchmarks/ingest.py

bench-archive: $(BIN)/arros
	$(BIN)/python benchmarks/archive_write.py

bench-plc: $(BIN)/arros
	$(BIN)/python benchmarks/plc.py

bench-windows: $(BIN)/arros
	$(BIN)/python benchmarks/window_replay.py

bench-brokers: $(BIN)/arros mosquitto
	$(BIN)/python benchmarks/embedded_vs_mosquitto.py

bench-decode: $(BIN)/arros
	$(BIN)/python benchmarks/decode_formats.py

bench-durability: $(BIN)/arros mosquitto
	$(BIN)/python benchmarks/durability.py

clean:
	rm -rf $(VENV) .venv-spb .azurite .pytest_cache .ruff_cache *.egg-info
