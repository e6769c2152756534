#!/bin/sh
# Runs the unit tests, then the integration tests, and ends with one line
# "N passed, N failed" summing both.  Usage: run-tests.sh [unit|integration]
#
# Nothing passes unseen: a runner's counts come from its own final line, and
# a runner that prints none, exits non-zero with no failure counted (a crash
# or a sanitizer report after its summary), runs no test, or runs past
# UNIT_TIMEOUT seconds (a unit binary) adds a failure.  So does a unit test
# source without its binary, and a unit binary that passes but prints an
# "[error]" line: an error a unit test expects is captured with
# llmr_log_hook and checked, so one in the output is a defect unseen.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
what=${1:-all}
passed=0
failed=0

fail() {    # one failure the runners could not count themselves
    echo "FAIL $*"
    failed=$((failed + 1))
}

tally() {   # $1: a runner's output, $2: its exit status, $3: its name
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        fail "$3: no final \"N passed, N failed\" line (exit status $2)"
        return
    fi
    p=${line%% passed*}
    f=${line#*passed, }
    f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        fail "$3: exit status $2 after \"$line\""
    elif [ "$2" -eq 0 ] && [ "$f" -ne 0 ]; then
        fail "$3: exit status 0 with failures counted"
    fi
    [ $((p + f)) -ne 0 ] || fail "$3: ran no test"
}

out=$(mktemp)
rcf=$(mktemp)
if [ "$what" != integration ]; then
    for src in tests/unit/test_*.c; do
        t="$BUILD/tests/$(basename "$src" .c)"
        if [ ! -x "$t" ]; then
            fail "unit: $t not built (from $src)"
            continue
        fi
        echo "== unit: $(basename "$t")"
        timeout -k 10 "$UNIT_TIMEOUT" "$t" >"$out" 2>&1
        rc=$?
        [ "$rc" -ne 124 ] || echo "ran past UNIT_TIMEOUT=${UNIT_TIMEOUT}s" >>"$out"
        sed 's/^/   /' "$out" | tail -n 40
        before=$failed
        tally "$out" "$rc" "unit $(basename "$t")"
        if [ "$failed" -eq "$before" ] && grep -q '\[error\]' "$out"; then
            fail "unit $(basename "$t"): passed but printed an [error] line (capture the" \
                 "errors a test expects with llmr_log_hook and check them):"
            grep -m 3 '\[error\]' "$out" | sed 's/^/   /'
        fi
    done
fi
if [ "$what" != unit ]; then
    echo "== integration"
    { python3 tests/integration/run.py --build "$BUILD" 2>&1; echo $? >"$rcf"; } | tee "$out"
    tally "$out" "$(cat "$rcf")" integration
fi
rm -f "$out" "$rcf"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
