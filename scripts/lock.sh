#!/usr/bin/env bash
# `make lock`: compile pyproject.toml's dependencies into hashed lock files (requirements/*.txt).
#
#   requirements/build.txt    pip and setuptools: installed first, so the project and any sdist
#                             are built offline with --no-build-isolation from hashed files
#   requirements/test.txt     runtime + test extra: what `make run` and `make test` install
#   requirements/runtime.txt  runtime only: what the Dockerfile installs
#
# Target: Linux x86_64, CPython 3.11 (the python:3.11-slim image and the machines `make test`
# runs on), whatever machine runs this. Pins already in the files are kept when they still
# satisfy pyproject.toml, so adding a dependency changes only what it brings; UPGRADE=1 moves every
# package to the newest release its bounds allow. build.txt and runtime.txt are resolved against
# test.txt as constraints, so all three pin the same versions: the image runs what `make test` ran.
#
# Why uv: `uv pip compile` resolves for a target platform and Python other than its own
# (--python-platform/--python-version) in seconds; pip-tools resolves for the interpreter it runs in.
# uv itself comes from the lock (the test extra pins it), hash-checked, into the project's venv.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

if [ ! -x "$VENV/bin/uv" ]; then
    pinned=$(mktemp)
    trap 'rm -f "$pinned"' EXIT
    # The `uv==X \ --hash=...` entry of the current lock, when there is one.
    awk '/^uv==/ { on = 1 } on { print } on && !/\\$/ { exit }' requirements/test.txt > "$pinned" 2>/dev/null || true
    if [ -s "$pinned" ]; then
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$pinned"
    else
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv>=0.9"
    fi
fi

compile() {
    "$VENV/bin/uv" pip compile --quiet --generate-hashes \
        --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
        --custom-compile-command "make lock" ${UPGRADE:+--upgrade} "$@"
}

compile pyproject.toml requirements/build.in --extra test -o requirements/test.txt
compile requirements/build.in -c requirements/test.txt -o requirements/build.txt
compile pyproject.toml requirements/build.in -c requirements/test.txt -o requirements/runtime.txt

echo "requirements/{build,test,runtime}.txt written; \`make test\` installs them (git diff requirements/ shows what moved)"
