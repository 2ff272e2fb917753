.PHONY: setup test mutants serve bench bench-sandbox bench-records bench-tenants bench-memory bench-docker bench-microvm lint

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

# Mutation check: each defence-removing patch of mutants.toml must make its tests fail
# (scripts/mutants.py --help; e.g. make mutants MUTANTS_ARGS="--only docker-*").
mutants:
	.venv/bin/python scripts/mutants.py $(MUTANTS_ARGS)

serve: setup
	.venv/bin/faas serve

lint:
	.venv/bin/ruff check src tests bench scripts
	bash scripts/typecheck.sh

bench: bench-sandbox bench-records bench-tenants bench-memory bench-docker bench-microvm

bench-sandbox: setup
	cd bench && ../.venv/bin/python bench_sandbox.py

bench-records: setup
	cd bench && ../.venv/bin/python bench_records.py

bench-tenants: setup
	cd bench && ../.venv/bin/python bench_tenants.py

bench-memory: setup
	cd bench && ../.venv/bin/python bench_body_memory.py

bench-docker: setup
	bash scripts/ensure-dockerd.sh
	cd bench && ../.venv/bin/python bench_docker.py

bench-microvm: setup
	cd bench && ../.venv/bin/python bench_microvm.py
