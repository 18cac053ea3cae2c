#!/usr/bin/env bash
# Shared setup for scripts/demo.sh and scripts/test.sh: system packages, then a venv
# with the project installed. Safe to run repeatedly; installs only what is missing.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

as_root() {
  if [ "$(id -u)" = "0" ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "bootstrap: need root (or sudo) to install: $*" >&2; exit 1; fi
}

# apt_need BINARY PACKAGE ...: install the packages whose binary is missing.
apt_need() {
  local missing=()
  while [ $# -gt 1 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ensure_compiler: what `gatehouse native build` (mypyc) needs besides the venv: a C
# compiler and the Python headers.
ensure_compiler() {
  apt_need gcc gcc
  if ! "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    echo "bootstrap: installing the Python headers (python3-dev)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-dev >/dev/null
  fi
}

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "bootstrap: Python 3.11+ is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1
fi

ensure_venv() {  # ensure_venv EXTRAS
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || { apt_need x python3-venv; "$PYTHON" -m venv .venv; }
  fi
  local stamp=".venv/.installed-${extras:-base}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    # The lock pins the runtime dependencies to the versions the container image ships.
    if [ -n "$extras" ]; then
      .venv/bin/python -m pip install -q -c requirements.lock -e ".[${extras}]"
    else
      .venv/bin/python -m pip install -q -c requirements.lock -e .
    fi
    touch "$stamp"
  fi
}
