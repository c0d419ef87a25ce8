#!/usr/bin/env bash
# Set up everything the tests need (apt packages, venv, model) and run lint, types and the full test suite.
# Arguments go to pytest (e.g. -m "not slow" for the fast tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Network isolation: when we may create namespaces, the suite runs where only loopback exists.
if [[ $(id -u) -eq 0 ]] && unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
fi
exec .venv/bin/python -m pytest "$@"
