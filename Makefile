# crashfleet: `make demo` runs the fleet on SQLite; `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The lock's refresher, pinned like everything else (`make lock`).
UV_VERSION := 0.13.9

.PHONY: test demo chaos lint typecheck pytest sysdeps proto lock clean deb e2e capture

# Every install is the lock's exact versions, checked against its hashes; the project itself goes in
# editable, with no dependency resolution of its own (--no-deps), so nothing newer can slip in.
$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh requirements.lock after changing a dependency in pyproject.toml: `make lock`, then
# `make test`, and commit both files. `make lock UPGRADE=1` moves every pin to the newest release.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header $(if $(UPGRADE),--upgrade) -o requirements.lock

# Debian packages the checks use for real: promtool (alert rule tests), chromium (web page test),
# makedumpfile (dmesg oracle), elfutils (eu-addr2line oracle), shellcheck (the packaging's and
# make e2e's shell scripts). Installed only when missing; waits up to 10 minutes for another apt
# run's lock (an image build of `make e2e`/`make capture` on the same machine) instead of failing.
sysdeps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v makedumpfile >/dev/null || missing="$$missing makedumpfile"; \
	command -v eu-addr2line >/dev/null || missing="$$missing elfutils"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing; \
	  else echo "note: missing Debian packages:$$missing (tests needing them will skip)"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy analysis
	$(BIN)/mypy wire agent collector crashfleet

pytest: $(STAMP) sysdeps
	bash tests/run_pytest.sh $(BIN)/python

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/crashfleet demo --duration 45

# The full chaos run (bench/chaos.py; ~12 minutes, opt-in): restarts the local PostgreSQL cluster
# mid-stream, so run it only on a machine where nothing else uses that server.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --pg-restart

proto: $(STAMP)
	$(BIN)/python proto/generate.py .

# The Debian package (docs/packaging.md), built with dpkg-buildpackage from the tracked files only
# (a clean checkout's content, local edits included once `git add`ed), then checked by lintian.
DEB_DIR := build/deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -b -us -uc --no-pre-clean
	lintian --fail-on error,warning --info $(DEB_DIR)/*.changes

# Opt-in, minutes long: the package on a Debian bookworm guest in QEMU with kdump-tools, crashed
# three times (docs/packaging.md). The guest image is cached under $(E2E_CACHE); E2E_ARGS=--keep
# keeps the run's work directory (scripts/e2e/fixtures.py makes fixtures of its captures).
E2E_CACHE ?= $(HOME)/.cache/crashfleet-e2e
E2E_ARGS ?=
e2e: deb
	$(PYTHON) scripts/e2e/run.py --cache $(E2E_CACHE) --deb $(DEB_DIR) $(E2E_ARGS)

# Opt-in, 15-40 minutes per amd64 guest under TCG, about 8 for bookworm-arm64: the capture lab
# (scripts/e2e/capture.py, docs/vmcore.md) crashes a guest of CAPTURE_GUEST (trixie-amd64,
# bookworm-backports-amd64, bookworm-arm64, bullseye-amd64, bookworm-amd64) with sysrq-c and the
# e2e module's NULL dereference, lets kdump-tools capture, and keeps the work directory for
# scripts/e2e/fixtures.py.
CAPTURE_CACHE ?= $(HOME)/.cache/crashfleet-capture
CAPTURE_GUEST ?= trixie-amd64
capture:
	$(PYTHON) scripts/e2e/capture.py --guest $(CAPTURE_GUEST) --cache $(CAPTURE_CACHE)

clean:
	rm -rf $(VENV) .venv-lock build *.egg-info .mypy_cache .ruff_cache .pytest_cache
