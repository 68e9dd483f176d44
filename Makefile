# Teapot: `make up` runs a whole cloud on this machine, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STATE  ?= $(CURDIR)/.teapot
HOSTS  ?= 4
DEBIAN_PACKAGES := python3-venv python3-dev gcc libffi-dev libssl-dev openvswitch-switch openssh-server iputils-ping mariadb-server \
	ceph-mon ceph-mgr ceph-osd ceph-mds radosgw ceph-common python3-rados python3-rbd python3-cephfs rabbitmq-server \
	qemu-utils ethtool haproxy keepalived curl
# qemu-utils: Cinder formats encrypted (LUKS) volumes with qemu-img before importing them to RBD.
# ethtool: the box's switch ports compute their own checksums (the userspace datapath needs it).
# haproxy: load balancers and clusters' API endpoints; keepalived: their active/standby pairs.
# Ceph's Python bindings (for Manila, Cinder and the box) exist only as Debian's modules: linked
# into the virtualenv when they were built for its Python.
CEPH_MODULES := rados rbd cephfs

.PHONY: install kubernetes up test lint bench clean proto

install: $(VENV)/.installed kubernetes

# Upstream Kubernetes (kube-apiserver, controller-manager, scheduler, kubeadm, kubectl) and etcd at
# the releases Teapot pins (src/teapot/releases.py), built from the Go module proxy into
# ~/.cache/teapot/kubernetes/<version>/ once; later runs find them there and do nothing.
kubernetes: $(VENV)/.installed
	$(BIN)/python -m teapot.releases

$(VENV)/.installed: pyproject.toml
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
		missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])'); \
	suffix=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	for m in $(CEPH_MODULES); do \
		if [ -f /usr/lib/python3/dist-packages/$$m$$suffix ]; then \
			ln -sf /usr/lib/python3/dist-packages/$$m$$suffix "$$site/$$m$$suffix"; fi; \
	done; \
	if [ -f /usr/lib/python3/dist-packages/ceph_argparse.py ]; then \
		ln -sf /usr/lib/python3/dist-packages/ceph_argparse.py "$$site/ceph_argparse.py"; fi
	touch $@

up: install
	$(BIN)/teapot up --state-dir $(STATE) --hosts $(HOSTS)

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q --durations=30 tests

lint: install
	$(BIN)/ruff check src tests bench

# The COSI driver's Python modules, generated from its .proto (committed).
proto: install
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src src/teapot/cosi/cosi.proto

clean:
	rm -rf $(VENV) $(STATE)
