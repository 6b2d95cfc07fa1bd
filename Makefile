# Tapeline: the two commands of the README, and what they need.
#   make demo   build .venv from Debian's python3, install, run `tapeline demo`
#   make test   install missing system packages (as root), then lint, type-check and run every test

PYTHON  ?= /usr/bin/python3
VENV    := .venv
BIN     := $(VENV)/bin
# command -> Debian package providing it, for what the tests start as real peers
SYSTEM_TOOLS := sipp:sip-tester mosquitto:mosquitto tshark:tshark sox:sox ffmpeg:ffmpeg \
                systemd-analyze:systemd pg_ctlcluster:postgresql chromium:chromium \
                shellcheck:shellcheck radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd \
                ceph:ceph-common tcpreplay:tcpreplay tcpdump:tcpdump
SYSTEM_LIBS  := /usr/lib/postgresql:postgresql

.PHONY: demo test venv system-deps lint typecheck pytest clean

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "python3-venv is missing: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/tapeline demo

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	for pair in $(SYSTEM_LIBS); do \
	  path=$${pair%%:*}; pkg=$${pair##*:}; [ -e $$path ] || missing="$$missing $$pkg"; \
	done; \
	dpkg -s python3-venv >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	dpkg -s libsndfile1 >/dev/null 2>&1 || missing="$$missing libsndfile1"; \
	dpkg -s libpcap0.8 >/dev/null 2>&1 || missing="$$missing libpcap0.8"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make test as root, or apt-get install them)" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: venv
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/ruff check src tests bench tools

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest

test: system-deps lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
