#!/bin/sh
# `make run`: two mock upstreams on 127.0.0.1:4101 and :4102 stand in for
# real deployments, and llmroute serves conf/llmroute.conf on :4000.
# Ctrl-C stops all three.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
"$BUILD/llmroute-mock" -p 4101 --name mock-a >/dev/null &
pids="$pids $!"
"$BUILD/llmroute-mock" -p 4102 --name mock-b >/dev/null &
pids="$pids $!"
cat <<MSG
llmroute on http://127.0.0.1:4000 with mock upstreams on :4101 and :4102. Try:
  curl -s http://127.0.0.1:4000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"hi"}]}'
  $BUILD/llmroute -c conf/llmroute.conf status
MSG
"$BUILD/llmroute" -c conf/llmroute.conf &
pids="$pids $!"
wait $!
