#!/usr/bin/env bash
# Quickstart command 2: the whole test suite (lint, types, unit, integration, deploy
# checks, and the benchmark suite in its short CI mode). Installs what it needs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
apt_need redis-server redis-server redis-cli redis-tools nginx nginx wrk wrk h2load nghttp2-client kubectl kubectl
ensure_venv "test"
# Tools that pip installs into the venv (hadolint, granian, gatehouse) must be on PATH.
export PATH="$REPO/.venv/bin:$PATH"
export GATEHOUSE_BENCH_SHORT=1
.venv/bin/ruff check hotpath plugins observability tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
