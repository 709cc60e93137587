# Two commands for a fresh machine with python3 and a C compiler:
#   make demo   set up .venv, build and install fastgd into it, run `fastgd demo`
#   make test   the same set-up, then the test suite
# and for the release:
#   make wheel        build the sdist and the repaired manylinux wheel into wheelhouse/,
#                     install the wheel in a fresh venv and smoke-test it there
#   make test-serial  the build without OpenMP (FASTGD_NO_OPENMP=1), tested as installed
#   make test-debug   the build with Cython bounds checking (FASTGD_DEBUG=1), tested alike
#   make sanitize     the debug build also under AddressSanitizer and UndefinedBehavior-
#                     Sanitizer (gcc, Linux), tested alike: any out-of-bounds
#                     access, use after free or undefined behaviour aborts the run (the
#                     tests that measure the process's memory are left out: the sanitizer's
#                     allocator keeps freed memory in quarantine)
#   make fuzz         the property and hostile-input tests with many random examples
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fastgd-installed
SOURCES := setup.py pyproject.toml $(wildcard fastgd/*.pyx fastgd/*.pxd fastgd/*.pxi fastgd/*.h)

.PHONY: demo test install bench clean wheel test-serial test-debug sanitize fuzz

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
MARKS = not packaging
test-serial: export FASTGD_NO_OPENMP = 1
test-serial: OTHER_VENV = .venv-serial
test-debug: export FASTGD_DEBUG = 1
test-debug: OTHER_VENV = .venv-debug
# The sanitizers' runtime must be the first library loaded, before Python's own: it is
# preloaded. Python's leaks at exit are not ours (detect_leaks=0); PYTHONMALLOC=malloc puts
# every Python allocation under AddressSanitizer too.
sanitize: export FASTGD_DEBUG = 1
sanitize: export FASTGD_SANITIZE = 1
sanitize: OTHER_VENV = .venv-sanitize
sanitize: MARKS = not packaging and not process_memory
sanitize: RUN = env LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so) $$($${CC:-cc} \
  -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1 PYTHONMALLOC=malloc
test-serial test-debug sanitize:
	test -x $(OTHER_VENV)/bin/python || $(PYTHON) -m venv $(OTHER_VENV)
	$(OTHER_VENV)/bin/python -m pip install --quiet "setuptools>=77" "Cython>=3.1" "numpy>=2.0" wheel
	$(OTHER_VENV)/bin/python -m pip install --quiet --no-build-isolation ".[test]"
	cd $$(mktemp -d) && $(RUN) $(CURDIR)/$(OTHER_VENV)/bin/python -m fastgd info \
	  && $(RUN) $(CURDIR)/$(OTHER_VENV)/bin/python -m pytest $(CURDIR)/tests -m "$(MARKS)"

# The same property and hostile-input tests as make test, with thousands of random
# examples each instead of a fixed few dozen (hypothesis' "fuzz" profile, tests/conftest.py).
fuzz: install
	$(PY) -m pytest tests/test_properties.py tests/test_fuzz.py --hypothesis-profile=fuzz

clean:
	rm -rf build dist wheelhouse *.egg-info fastgd/*.c fastgd/*.so fastgd/*.html
