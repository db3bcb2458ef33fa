# gaio: `make test` and `make bench` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
CC     ?= cc

.PHONY: test bench stress install system-deps clean

# Debian's liburing-dev gives the io_uring engine its headers and static library.
# Installed only when missing, only as root, only where apt-get exists; without it
# the package still builds and epoll serves.
system-deps:
	@if [ "$$(uname -s)" = Linux ] && [ ! -f /usr/include/liburing.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "gaio: installing liburing-dev for the io_uring engine"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liburing-dev >/dev/null) \
	      || echo "gaio: could not install liburing-dev; io_uring engine off, epoll serves"; \
	  else \
	    echo "gaio: liburing-dev missing and cannot be installed here; io_uring engine off, epoll serves"; \
	  fi; \
	fi

# Debian's own python3 needs python3-venv for this (pyenv and python.org builds have it).
$(VPY):
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install -q --upgrade pip

install: system-deps $(VPY)
	$(VPY) -m pip install -q -e '.[test]'

# The whole suite twice: on the compiled hot path (what users run), then on
# the Python source it is compiled from (what runs where mypyc cannot).
test: install
	$(VPY) -m pytest -q
	GAIO_PURE_PYTHON=1 $(VPY) -m pytest -q

# The long profile of the model-based and fault tests, then the same under
# CPython's debug allocator and dev mode (catches use of freed memory).
stress: install
	GAIO_STRESS=1 $(VPY) -m pytest -q -o timeout=0 tests/test_model.py tests/test_faults.py tests/test_regressions.py
	PYTHONMALLOC=debug $(VPY) -X dev -m pytest -q -o timeout=0 \
	  -W error::ResourceWarning -W error::pytest.PytestUnraisableExceptionWarning \
	  tests/test_model.py tests/test_faults.py tests/test_regressions.py tests/test_uring_engine.py \
	  tests/test_readiness_engine.py tests/test_reap.py
	$(VPY) bench/soak.py --cycles 20000 --ops 1000000

bench: system-deps $(VPY)
	$(VPY) -m pip install -q -e '.[test,bench]' || $(VPY) -m pip install -q -e '.[test]'
	$(CC) -O2 -Wall -o bench/loadgen bench/loadgen.c
	$(VPY) bench/run.py $(if $(filter-out 0,$(FULL)),--full,--quick)

clean:
	rm -rf $(VENV) build *.egg-info gaio/_uring*.so gaio/_uring.c bench/loadgen \
	  *__mypyc*.so gaio/_native_*.py gaio/_native_*.so gaio/backends/_native_*
