# Two commands for a fresh machine with python3 and a C compiler:
#   make demo   set up .venv, build and install fastgd into it, run `fastgd demo`
#   make test   the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fastgd-installed
SOURCES := setup.py pyproject.toml $(wildcard fastgd/*.pyx fastgd/*.pxd fastgd/*.pxi fastgd/*.h)

.PHONY: demo test install bench clean

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

clean:
	rm -rf build dist *.egg-info fastgd/*.c fastgd/*.so fastgd/*.html
