#!/usr/bin/env bash
# mypy --strict on the package, the benchmarks and every test folder.
# Test folders with a conftest.py of their own are checked one at a time:
# they are not packages (their modules import each other by bare name), so
# each conftest would otherwise be a second module named "conftest".
set -euo pipefail
cd "$(dirname "$0")/.."
MYPY=.venv/bin/mypy
MYPYPATH=src:tests "$MYPY" src bench tests/conftest.py tests/helpers.py tests/pg_cluster.py tests/unit
for dir in tests/integration tests/security tests/docker tests/microvm tests/store; do
  MYPYPATH="src:tests:$dir" "$MYPY" "$dir"
done
