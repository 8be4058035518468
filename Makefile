# The commands README and CI use. Each target creates .venv when it is missing and installs into it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: install lint format test demo docs emulator bench fuzz soak clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# Dependency groups (PEP 735) need pip 25.1 or newer.
	$(PY) -m pip install $(PIP_QUIET) --upgrade "pip>=25.1" 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install $(PIP_QUIET) -e ".[postgres,mysql,s3]" --group dev 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import mns_consumer, mns, alibabacloud_dybaseapi20170525, pytest, mypy"
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tests/typing
	@# The manual, built strictly into a throwaway folder: a broken link or a page missing from nav fails.
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site-check

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(VENV)/bin/pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

docs: $(STAMP)
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

demo: $(STAMP)
	$(VENV)/bin/mns-consumer demo $(DEMO_ARGS)

emulator: $(STAMP)
	$(VENV)/bin/mns-consumer emulator --listen 127.0.0.1:9100 --seed-receipts 20 \
		--queue SmsReport=Alicom-Queue-i1-SmsReport --queue SmsUp=Alicom-Queue-i1-SmsUp \
		--queue SignSmsReport=Alicom-Queue-i1-SignSmsReport --queue TemplateSmsReport=Alicom-Queue-i1-TemplateSmsReport

bench: $(STAMP)
	$(PY) bench/emulator_bench.py
	$(PY) bench/sink_bench.py
	$(PY) bench/daemon_bench.py
	$(PY) bench/push_bench.py

# Each atheris target for FUZZ_SECONDS (docs/development.md, "Fuzzing"). New corpus entries go to
# build/fuzz/corpus/, crashes to build/fuzz/<target>-crash-*; the checked-in seeds are only read.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= mns_body push_body push_http config replay
FUZZ_ARGS ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

fuzz: $(STAMP)
	$(PY) -m pip install $(PIP_QUIET) --group fuzz 2>&1 | grep -v "is ignored" || true
	@status=0; for target in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus/$$target; \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		$(PY) -m tests.fuzz.run $$target -max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS) \
			-artifact_prefix=build/fuzz/$$target- build/fuzz/corpus/$$target tests/fuzz/corpus/$$target \
			|| status=1; \
	done; \
	$(PY) -c "from tests.fuzz.checks import remove_stale_scratch; remove_stale_scratch()"; \
	exit $$status

# Hours-long leak and recovery check, not part of `make test` (which runs a 2-minute form of it).
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(PY) -m pip install $(PIP_QUIET) --group soak 2>&1 | grep -v "is ignored" || true
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES) --out build/soak

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage build dist
