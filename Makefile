# kioskd: `make run` starts the demo hall on http://127.0.0.1:8080, `make test` runs every test.
CONFIG ?= devices.toml
PYTEST_ARGS ?=
PREFIX ?= /opt/kioskd
DESTDIR ?=

.PHONY: run test bench check clean install uninstall

run:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd run -c $(CONFIG)

test:
	@scripts/bootstrap.sh test
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# Every benchmark in turn (benchmarks/suite.py), then one table of the hall's figures;
# results in artifacts/bench/DATE-TIME/. QUICK=1: each briefly, to check the wiring.
bench:
	@scripts/bootstrap.sh test
	.venv/bin/python benchmarks/suite.py $(if $(QUICK),--quick)

check:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd check -c $(CONFIG)

# `sudo make install`: kioskd as a system service on the hall's PC (README: Install in a
# hall); DESTDIR=DIR installs into a staging tree instead of /.
install:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd install --prefix $(PREFIX) $(if $(DESTDIR),--root $(DESTDIR))

# Removes what install put in place; keeps the data (/var/lib/kioskd) and /etc/kioskd.
uninstall:
	@scripts/bootstrap.sh run
	.venv/bin/kioskd uninstall --prefix $(PREFIX) $(if $(DESTDIR),--root $(DESTDIR))

clean:
	rm -rf .venv var .pytest_cache .hypothesis
