#!/usr/bin/env bash
# Install the grader and what it needs, on a fresh machine (Debian/Ubuntu, Python 3.11).
#
#   bash scripts/setup.sh            # the grader, its Python dependencies, torch 2.13.0 (CPU build, the `staff` extra), Dask distributed (`cluster`)
#   bash scripts/setup.sh --docker   # and a Docker engine + the sandbox image, for `grader grade`
#
# torch is pinned to 2.13.0: that CPU build is what the course machines have on disk; a newer
# or unpinned torch resolves to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
echo "setup: installing the grader with $("$PYTHON" --version)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[staff,dev,cluster]'
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

if [ "${1:-}" = "--docker" ]; then
    bash scripts/install-docker.sh
    "$PYTHON" -m grader image build
fi
echo "setup: done. Try: grader check reference/"
