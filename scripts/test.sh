#!/usr/bin/env bash
# Set everything up and run the whole suite: lint, types, then every test tier.
# Tiers whose host support is really missing skip with a printed reason; the
# summary at the end lists which tiers ran. Then the mutation check
# (scripts/mutants.py, mutants.toml) removes each defence alone from a scratch
# copy and fails unless that defence's tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if ! bash scripts/ensure-dockerd.sh; then
  echo "test: no Docker daemon could be started; the docker tier will skip (reason above)"
fi

echo "== ruff"
.venv/bin/ruff check src tests bench scripts
echo "== mypy --strict (package, benchmarks, tests)"
bash scripts/typecheck.sh
echo "== pytest"
.venv/bin/pytest -ra -p no:cacheprovider tests "$@"
echo "== mutation check (make mutants): each defence removed alone must fail its tests"
.venv/bin/python scripts/mutants.py
