# Two commands on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test test-setup lint pytest bench-ingest bench-query bench-dicomweb bench-ui bench-cluster migration clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

VIEWER_ARGS ?=

run: $(VENV)/.installed  ## start the server on its embedded defaults (SQLite, ./pacsnode-data); the viewer once
	@$(VENV)/bin/pacsnode viewer install --if-missing $(VIEWER_ARGS) || \
		echo "warning: the OHIF viewer is not installed (offline?): /viewer answers 404 until 'pacsnode viewer install' succeeds"
	$(VENV)/bin/pacsnode serve $(ARGS)

test: test-setup lint pytest  ## everything CI checks (installs missing test tools as root)

test-setup:  ## the peers and tools the tests talk to, and PostgreSQL running
	tools/test-setup

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

export PACSNODE_TEST_POSTGRES_URL ?= postgresql+psycopg://pacsnode:pacsnode@127.0.0.1:5432/postgres

pytest: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $(PYTEST_ARGS)

bench-ingest: $(VENV)/.installed  ## pacsnode vs Orthanc ingest throughput (needs dcmtk, orthanc)
	cd benchmarks && ../$(PY) ingest.py

bench-query: $(VENV)/.installed  ## C-FIND on a 1M-instance index; C-FIND, C-MOVE vs Orthanc: make bench-query ARGS="--instances 20000"
	cd benchmarks && ../$(PY) query.py $(ARGS)

bench-dicomweb: $(VENV)/.installed  ## study metadata, QIDO-RS, WADO-RS vs Orthanc (needs orthanc-dicomweb, dcmtk): make bench-dicomweb ARGS="--quick"
	cd benchmarks && ../$(PY) dicomweb.py $(ARGS)

bench-ui: $(VENV)/.installed  ## the web UI's study list on 10,000 studies; OHIF's first image of a 300-slice CT (needs chromium)
	cd benchmarks && ../$(PY) ui.py

bench-cluster: $(VENV)/.installed  ## ingest through HAProxy into 1 and 3 cluster nodes, the proxy hop (needs haproxy, dcmtk, PACSNODE_BENCH_POSTGRES_URL)
	cd benchmarks && ../$(PY) cluster.py $(ARGS)

migration: $(VENV)/.installed  ## new Alembic revision from schema changes: make migration MSG="..."
	$(PY) -c "from alembic import command; from pacsnode.archive.database import MIGRATIONS, alembic_config; \
	config = alembic_config('sqlite:///$(CURDIR)/.migration.sqlite'); command.upgrade(config, 'head'); \
	number = len(list(MIGRATIONS.glob('versions/0*.py'))) + 1; \
	command.revision(config, message='$(MSG)', autogenerate=True, rev_id=f'{number:04d}')"
	rm -f .migration.sqlite

clean:
	rm -rf $(VENV) pacsnode-data
