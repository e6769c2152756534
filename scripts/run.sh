#!/bin/sh
# `make run`: two mock upstreams on 127.0.0.1:4101 and :4102 stand in for
# real deployments, and llmroute serves conf/llmroute.conf on :4000.
# Ctrl-C (or SIGTERM to make or to this script) stops all three.
# MOCK_PORTS and CONF may be overridden (the tests do, to stay off fixed ports).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONF=${CONF:-conf/llmroute.conf}
MOCK_PORTS=${MOCK_PORTS:-"4101 4102"}
pids=""
tmp=$(mktemp -d)
cleanup() {
    trap - EXIT INT TERM
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A mock that cannot bind (the port is taken) exits: say so and stop here,
# rather than start llmroute against whatever holds the port.
start_mock() {
    "$BUILD/llmroute-mock" -p "$1" --name "$2" >"$tmp/$2.out" 2>"$tmp/$2.err" &
    mock=$!
    pids="$pids $mock"
    tries=0
    while ! grep -q '^port=' "$tmp/$2.out"; do
        if ! kill -0 "$mock" 2>/dev/null || [ "$tries" -ge 100 ]; then
            echo "make run: mock upstream $2 did not start on 127.0.0.1:$1 (port taken?)" >&2
            cat "$tmp/$2.err" >&2
            exit 1
        fi
        tries=$((tries + 1))
        sleep 0.05
    done
}
n=0
for port in $MOCK_PORTS; do
    n=$((n + 1))
    start_mock "$port" "mock-$(echo abcdefgh | cut -c$n)"
done
cat <<MSG
llmroute on http://127.0.0.1:4000 with mock upstreams on :4101 and :4102. Try:
  curl -s http://127.0.0.1:4000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"hi"}]}'
  $BUILD/llmroute -c $CONF status
MSG
"$BUILD/llmroute" -c "$CONF" &
pids="$pids $!"
wait $!
