#!/bin/sh
# Installs what llmroute needs to build, test and benchmark on Debian.
# Idempotent: packages already present are skipped, and apt-get runs only
# when something is missing.
set -eu

PKGS="build-essential pkg-config libevent-dev libcurl4-openssl-dev libconfig-dev
libjsmn-dev curl python3 wrk nghttp2-client nginx valgrind clang
libclang-rt-14-dev procps libssl-dev openssl"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "install-deps: everything is installed"
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
