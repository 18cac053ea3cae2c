#!/usr/bin/env bash
# Quickstart command 1: start the gateway with a demo upstream on the embedded example
# config (in-process state; set REDIS_URL to share state through Redis).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv ""
exec .venv/bin/gatehouse demo "$@"
