# Conveniences over scripts/; the scripts themselves need nothing but bash, Python and apt.
.PHONY: setup test demo lint bench lock deploy-config

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

# The Kubernetes base ships the policies and runbooks as ConfigMaps; kustomize reads only files
# inside its folder, so they are copies (tests/deploy/test_overlays.py fails when they differ).
deploy-config:
	cp policies/*.yaml deploy/kubernetes/base/config/policies/
	cp runbooks/*.yaml deploy/kubernetes/base/config/runbooks/
