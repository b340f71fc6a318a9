# Provenance Ledger. Needs only python3 (3.11+) and make; everything else is installed into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ./provenance-data
LISTEN ?= 127.0.0.1:50051
PROTOS := $(shell find proto -name '*.proto' | sort)

.PHONY: install serve test lint typecheck proto bench bench-7b long fuzz demo clean evidence screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/provenance serve --data $(DATA) --listen $(LISTEN)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check client ledger tests bench
	$(VENV)/bin/mypy

typecheck: lint

# Regenerates the committed stubs in client/_pb from proto/ (tests/app/test_proto_stubs.py fails when stale).
proto: $(STAMP)
	$(PY) -m client._protogen

# Every benchmark, each printing the machine and its figures. Includes issue 14's PostgreSQL digest index at
# 10^8 postings (about 25 min of the run and 17 GB of /tmp; BENCH_PG_POSTINGS=10000000 for a shorter run).
bench: $(STAMP)
	$(PY) -m bench

# Issue 12 at 7B scale (minutes; not in `make bench`): two Llama-7B-shaped bf16 models (~27 GB, written
# under /tmp and deleted) compared in a fresh process; targets < 5 min, < 6 GiB RSS. BENCH_7B_RUNS=3 for a median.
bench-7b: $(STAMP)
	$(PY) -m bench compare7b

# Issue 12 published error rates of `provenance compare` (power per derivation class and strength, false
# `related` over 500 independent pairs per null family): the table in docs/descent.md, "Error rates".
# Not in `make bench`: 11 to 21 min on 2 cores (11.3 min and, under load, 21.1 min measured on the shared 2-core VM, 2026-12-07;
# the document states each run's time). `$(PY) -m bench --quick evidence` is a one-minute smoke run.
evidence: $(STAMP)
	$(PY) -m bench evidence

# Issue 6 long runs (minutes; not in `make bench`): the hammer (HAMMER_SECONDS, default 120) and
# 50 SIGKILLs with restarts (FAULT_KILLS). Figures: docs/guarantees.md.
long: $(STAMP)
	$(PY) -m bench hammer faults

# Long fuzzing: every property of tests/*/test_fuzz_*.py runs for FUZZ_SECONDS (default 600) each.
FUZZ_SECONDS ?= 600
# Address space capped (FUZZ_MEMORY_KB, 8 GiB): a parser that allocates what a small input asks for
# fails its property with a MemoryError and the input, instead of being OOM-killed without one.
FUZZ_MEMORY_KB ?= 8000000
fuzz: $(STAMP)
	ulimit -v $(FUZZ_MEMORY_KB) && FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -s tests/app/test_fuzz_parsers.py tests/grpc/test_fuzz_grpc.py

# The registry story end to end (ledger, two labs, dataset, model family, lineage, court bundle); < 1 min.
demo: $(STAMP)
	$(PY) deploy/demo.py

# The README's screenshots (committed PNGs under docs/img/), regenerated with Debian's headless chromium:
# the explorer's record page on a throwaway ledger (bench/screenshots.py, a few seconds), and the court
# report (docs/img/report.png) of a fresh demo run's bundle, written in SHOTS (about 15 s).
SHOTS ?= /tmp/provenance-screenshots
screenshots: $(STAMP)
	$(PY) -m bench.screenshots
	rm -rf $(SHOTS) && $(PY) deploy/demo.py $(SHOTS) < /dev/null > $(SHOTS).log || { cat $(SHOTS).log; exit 1; }
	$(PY) -c 'import sys; from pathlib import Path; from bench.screenshots import chromium_screenshot; \
	  chromium_screenshot(Path(sys.argv[1]).resolve().as_uri(), Path(sys.argv[2]).resolve(), (1000, 1750))' \
	  $(SHOTS)/report.html docs/img/report.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
