# crashfleet: `make demo` runs the fleet on SQLite; `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest sysdeps proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages the checks use for real: promtool (alert rule tests), chromium (web page test),
# makedumpfile (dmesg oracle), elfutils (eu-addr2line oracle). Installed only when missing.
sysdeps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v makedumpfile >/dev/null || missing="$$missing makedumpfile"; \
	command -v eu-addr2line >/dev/null || missing="$$missing elfutils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "note: missing Debian packages:$$missing (tests needing them will skip)"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy analysis
	$(BIN)/mypy agent collector crashfleet

pytest: $(STAMP) sysdeps
	bash tests/run_pytest.sh $(BIN)/python

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/crashfleet demo --duration 45

proto: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. \
	  proto/crashfleet/v1/*.proto

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
