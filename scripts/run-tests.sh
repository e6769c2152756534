#!/bin/sh
# Runs the unit tests, then the integration tests, and ends with one line
# "N passed, N failed" summing both.  Usage: run-tests.sh [unit|integration]
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
what=${1:-all}
passed=0
failed=0

tally() {   # reads a runner's output, echoes it, adds its closing counts
    line=$(tail -n 1 "$1")
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
    f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
    if [ -z "$p" ]; then    # a crashed runner counts as one failure
        p=0
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

out=$(mktemp)
if [ "$what" != integration ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        echo "== unit: $(basename "$t")"
        "$t" >"$out" 2>&1
        sed 's/^/   /' "$out" | tail -n 40
        tally "$out"
    done
fi
if [ "$what" != unit ]; then
    echo "== integration"
    python3 tests/integration/run.py --build "$BUILD" 2>&1 | tee "$out"
    tally "$out"
fi
rm -f "$out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
