# Teapot: `make up` runs a whole cloud on this machine, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STATE  ?= $(CURDIR)/.teapot
HOSTS  ?= 4
DEBIAN_PACKAGES := python3-venv python3-dev gcc libffi-dev libssl-dev openvswitch-switch openssh-server iputils-ping mariadb-server

.PHONY: install up test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
		missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

up: install
	$(BIN)/teapot up --state-dir $(STATE) --hosts $(HOSTS)

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q tests

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) $(STATE)
