# Every target creates .venv on first use: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tdkit-installed

.PHONY: demo lint test release reference bench-training bench-grading bench-class bench-data bench-suite bench-similarity bench-similarity-libraries clean

# td-requirements.txt is the course environment: a line added there is installed on the next make.
$(STAMP): pyproject.toml td-requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# What the students' notebooks may import: graded against exactly this (tdkit.release.environment).
	$(PY) -m pip install -q -r td-requirements.txt
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/system-deps.sh
	$(VENV)/bin/tdkit demo

# Lint, format and types gate the tests: a finding stops `make test` before it starts.
# mypy reads pyproject.toml: --strict, calls into untyped libraries allowed.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench grader_tests examples
	$(VENV)/bin/ruff format --check src tests bench grader_tests examples
	$(VENV)/bin/mypy src

test: lint
	bash scripts/system-deps.sh
	$(VENV)/bin/pytest -q

# Every assignment of the course (source/<name>/<name>.md), or one: make release ASSIGNMENT=td_mlp.
ASSIGNMENT ?= $(foreach d,$(notdir $(wildcard source/*)),$(if $(wildcard source/$(d)/$(d).md),$(d)))
release: $(STAMP)
	for name in $(ASSIGNMENT); do $(VENV)/bin/tdkit release $$name || exit 1; done

# The training benchmark is the reference record: it rewrites reference/results.json.
reference bench-training: $(STAMP)
	$(PY) bench/training.py

bench-grading: $(STAMP)
	$(PY) bench/grading.py

# A class of 200 graded, 5 changed and graded again (about 50 minutes on 2 cores).
bench-class: $(STAMP)
	$(PY) bench/class.py

bench-data: $(STAMP)
	$(PY) bench/data_prep.py

# tdkit similarity on a class of 200 beside one grading, and its false positives (bench/similarity.py).
bench-similarity: $(STAMP)
	bash scripts/system-deps.sh
	$(PY) bench/similarity.py

# copydetect against Dolos on the labelled cases (Node.js and npm: Dolos is an npm package).
bench-similarity-libraries: $(STAMP)
	npm install --prefix bench/dolos --no-audit --no-fund
	$(PY) bench/similarity_libraries.py

# The suite under process accounting: its CPU by kind of process (root and `accton`, package acct).
bench-suite: $(STAMP)
	$(PY) bench/suite_cpu.py

clean:
	rm -rf autograded feedback reports gradebook.db .pytest_cache
