# kioskd: `make run` starts the demo hall on http://127.0.0.1:8080, `make test` runs every test.
CONFIG ?= devices.toml
PYTEST_ARGS ?=

.PHONY: run test bench check clean

run:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd run -c $(CONFIG)

test:
	@scripts/bootstrap.sh test
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python benchmarks/run.py
	.venv/bin/python benchmarks/history.py
	.venv/bin/python benchmarks/printing.py
	.venv/bin/python benchmarks/boards.py
	.venv/bin/python benchmarks/voice.py
	.venv/bin/python benchmarks/stats_year.py
	.venv/bin/python benchmarks/alerts_check.py
	.venv/bin/python benchmarks/keypads.py

check:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd check -c $(CONFIG)

clean:
	rm -rf .venv var .pytest_cache .hypothesis
