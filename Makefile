# Conveniences over scripts/; the scripts themselves need nothing but bash, Python and apt.
.PHONY: setup test demo lint bench lock

setup:
	scripts/setup

test:
	scripts/test

demo:
	scripts/demo

lint: setup
	.venv/bin/ruff check .

# Regenerate constraints.txt from a fresh resolution of pyproject.toml.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip && .lock-venv/bin/pip install -q -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^opsbot' > constraints.txt
	rm -rf .lock-venv
