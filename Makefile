# Two commands for a fresh machine with python3 and a C compiler:
#   make demo   set up .venv, build and install fastgd into it, run `fastgd demo`
#   make test   the same set-up, then the test suite
# and for the release:
#   make wheel        build the sdist and the repaired manylinux wheel into wheelhouse/,
#                     install the wheel in a fresh venv and smoke-test it there
#   make test-serial  the build without OpenMP (FASTGD_NO_OPENMP=1), tested as installed
#   make test-debug   the build with Cython bounds checking (FASTGD_DEBUG=1), tested alike
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fastgd-installed
SOURCES := setup.py pyproject.toml $(wildcard fastgd/*.pyx fastgd/*.pxd fastgd/*.pxi fastgd/*.h)

.PHONY: demo test install bench clean wheel test-serial test-debug

demo: install
	$(VENV)/bin/fastgd demo

test: install
	$(PY) -m pytest tests

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Build tools go into the venv first, so the editable build needs no isolated environment.
$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install --quiet "setuptools>=77" "Cython>=3.1" "numpy>=2.0" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test]"
	touch $(STAMP)

bench: install
	$(PY) -m pip install --quiet "pytest-benchmark>=4" "matplotlib>=3.7"
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/run.py | tee benchmarks/latest.md

wheel: install
	$(PY) tools/check_wheel.py --out wheelhouse

# Each other kind of build gets a venv of its own and a regular (not editable) install, and
# the tests run from outside the source tree, so they import the installed build. The
# variable stays set for the tests too: tests/test_config.py checks the build is that kind.
test-serial: export FASTGD_NO_OPENMP = 1
test-serial: OTHER_VENV = .venv-serial
test-debug: export FASTGD_DEBUG = 1
test-debug: OTHER_VENV = .venv-debug
test-serial test-debug:
	test -x $(OTHER_VENV)/bin/python || $(PYTHON) -m venv $(OTHER_VENV)
	$(OTHER_VENV)/bin/python -m pip install --quiet "setuptools>=77" "Cython>=3.1" "numpy>=2.0" wheel
	$(OTHER_VENV)/bin/python -m pip install --quiet --no-build-isolation ".[test]"
	cd $$(mktemp -d) && $(CURDIR)/$(OTHER_VENV)/bin/python -m fastgd info \
	  && $(CURDIR)/$(OTHER_VENV)/bin/python -m pytest $(CURDIR)/tests -m "not packaging"

clean:
	rm -rf build dist wheelhouse *.egg-info fastgd/*.c fastgd/*.so fastgd/*.html
