#!/usr/bin/env bash
# The console's part of CI (for .ci/run: `bash services/console/scripts/ci.sh`):
# the committed generated code and dist/ are exactly what the sources give,
# the types check, and the browser tests pass against a fresh `roaming up`
# (the binary at CONSOLE_MESH_BIN, default target/debug/roaming: build it first).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
  apt-get update -qq
  apt-get install -y --no-install-recommends chromium
fi

npm ci --no-audit --no-fund
npm run generate
npm run check
npm run build
if [ -n "$(git status --porcelain -- src/gen dist)" ]; then
  git status --porcelain -- src/gen dist >&2
  git diff --stat -- src/gen dist >&2
  echo "services/console: src/gen or dist/ differ from a rebuild of the sources: run npm run generate && npm run build, and commit" >&2
  exit 1
fi
npm test
