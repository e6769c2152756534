#!/bin/sh
# Installs what llmroute needs on Debian, by purpose:
#   scripts/install-deps.sh [--list] [run] [test] [bench] [fuzz] [all]
#   run    build and `make run`: compiler, pkg-config, the libraries, curl, python3
#   test   run + what `make test` uses: nginx and the openssl CLI (test_tls.py), pgrep,
#          groff and man (test_install.py renders the man page), prometheus (test_metrics.py),
#          chromium (test_ui.py), node and npm, then the client SDKs of test_clients.py
#          (scripts/install-clients.sh)
#   bench  run + the load tools of `make bench`: wrk, h2load, nginx, openssl, ss
#   fuzz   run + clang and its libFuzzer runtime (`make fuzz`)
#   all    everything above, and valgrind
# The default is run; --list prints the packages instead of installing.  Idempotent: packages already present are skipped, and
# apt-get runs only when something is missing.  `make` itself never calls it.
set -eu

RUN="build-essential pkg-config libevent-dev libcurl4-openssl-dev libconfig-dev
libjsmn-dev libssl-dev libhiredis-dev liblmdb-dev libyaml-dev curl python3"
TEST="nginx openssl procps strace nodejs npm chromium
groff-base man-db"
TEST="$TEST prometheus"   # promtool and a real scrape (test_metrics.py)
TEST="$TEST redis-server"  # a real Redis (common/redis.c, the Redis cache, multi-host sync)
BENCH="wrk nghttp2-client nginx procps"
BENCH="$BENCH openssl iproute2"  # the HTTPS scenario: a test CA (openssl), upstream connections (ss)
BENCH="$BENCH redis-server"  # the multi-host sync scenario (scripts/bench_sync.py)
FUZZ="clang libclang-rt-14-dev"
DEV="valgrind"

list=0
if [ "${1:-}" = "--list" ]; then     # print the packages of the sets, install nothing
    list=1
    shift
fi
[ "$#" -gt 0 ] || set -- run
pkgs=$RUN
for what in "$@"; do
    case $what in
    run) ;;
    test) pkgs="$pkgs $TEST" ;;
    bench) pkgs="$pkgs $BENCH" ;;
    fuzz) pkgs="$pkgs $FUZZ" ;;
    all) pkgs="$pkgs $TEST $BENCH $FUZZ $DEV" ;;
    *) echo "usage: $0 [--list] [run] [test] [bench] [fuzz] [all]" >&2; exit 2 ;;
    esac
done

uniq=""
for p in $pkgs; do
    case " $uniq " in *" $p "*) ;; *) uniq="$uniq $p" ;; esac
done
pkgs=${uniq# }
if [ "$list" -eq 1 ]; then
    echo $pkgs
    exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps ($*): not a Debian system; install the equivalents of:" $pkgs >&2
    exit 0
fi
missing=""
for p in $pkgs; do
    # A node from elsewhere (NodeSource's nodejs bundles npm and conflicts
    # with Debian's npm package) serves as well as Debian's.
    case $p in
    nodejs) ! command -v node >/dev/null 2>&1 || continue ;;
    npm) ! command -v npm >/dev/null 2>&1 || continue ;;
    esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# The test set ends with the client SDKs (npm packages, not Debian's),
# whichever way it leaves.
clients() {
    case " $pkgs " in
    *" npm "*) "$(dirname "$0")/install-clients.sh" ;;
    esac
}
if [ -z "$missing" ]; then
    echo "install-deps ($*): everything is installed"
    clients
    exit 0
fi
echo "install-deps ($*): installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
clients
