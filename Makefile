# The two commands a new machine needs. Both install what is missing and are safe to rerun.
.PHONY: run test setup check clean-venv

run: setup
	@.venv/bin/market-bridge run

test: setup
	@scripts/test

setup:
	@scripts/bootstrap

check: setup
	@scripts/check
