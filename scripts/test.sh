#!/usr/bin/env bash
# Quickstart command 2: the whole test suite (lint, types, unit, integration, deploy
# checks, and the benchmark suite in its short CI mode), then the integration tests once
# more with every gateway on the compiled hot path. Installs what it needs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
apt_need redis-server redis-server redis-cli redis-tools nginx nginx wrk wrk h2load nghttp2-client kubectl kubectl
ensure_compiler
ensure_venv "test"
# Tools that pip installs into the venv (hadolint, granian, gatehouse) must be on PATH.
export PATH="$REPO/.venv/bin:$PATH"
export GATEHOUSE_BENCH_SHORT=1
.venv/bin/ruff check hotpath plugins observability controlplane tests bench
.venv/bin/mypy
# The compiled hot path (hotpath/native), built for this run only: a build in the
# checkout is never what gets tested.
NATIVE_TMP="$(mktemp -d)"
trap 'rm -rf "$NATIVE_TMP"' EXIT
GATEHOUSE_NATIVE=off .venv/bin/gatehouse native build --out "$NATIVE_TMP/lib"
GATEHOUSE_TESTS_NATIVE_BUILD="$NATIVE_TMP/lib" .venv/bin/python -m pytest -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
  echo "test.sh: the integration tests again, with every gateway on the compiled hot path" >&2
  GATEHOUSE_TESTS_NATIVE_DIR="$NATIVE_TMP/lib" .venv/bin/python -m pytest -p no:cacheprovider -q tests/integration
fi
