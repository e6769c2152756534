#!/bin/sh
# `make bench`: llmroute against a direct call and nginx on the same mock
# upstream, on loopback.  See scripts/bench.py; figures are ratios.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
exec python3 scripts/bench.py --build "${BUILD:-build}" "$@"
