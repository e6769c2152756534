#!/bin/sh
# Installs the official client SDKs that tests/integration/test_clients.py
# runs against a real llmroute (the OpenAI Node SDK with its AzureOpenAI
# class, the Vercel AI SDK, LangChain JS, the Anthropic Node SDK) into
# tests/clients/node_modules, at
# the exact versions of tests/clients/package-lock.json (`npm ci`).
# Needs node >= 18 and npm (scripts/install-deps.sh test installs them).
# Idempotent and cheap when nothing changed: a stamp in node_modules holds
# the checksum of the lock file it was installed from, so the registry is
# asked only on the first run and after the lock file changes.
set -eu
cd "$(dirname "$0")/../tests/clients"
stamp=node_modules/.llmroute-lock.sha256
for c in node npm sha256sum; do
    command -v "$c" >/dev/null 2>&1 || {
        echo "install-clients: $c not found (scripts/install-deps.sh test)" >&2
        exit 1
    }
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
    echo "install-clients: node $(node --version) is too old, the SDKs need >= 18" >&2
    exit 1
fi
sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    exit 0
fi
echo "install-clients: npm ci in tests/clients (node $(node --version))"
npm ci --no-audit --no-fund --loglevel=error
echo "$sum" >"$stamp"
