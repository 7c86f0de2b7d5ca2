# Conveniences; the scripts are the real commands (a fresh Debian has no make).
.PHONY: serve test lint web bench
serve:
	scripts/serve
test:
	scripts/test
lint:
	scripts/lint
web:
	scripts/web-build
bench:
	scripts/bench
