#!/usr/bin/env bash
# The whole test suite, as the README names it and CI runs it:
#   bash tests/run.sh
# Installs what a fresh machine lacks, then runs every test once.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# System packages the suite talks to for real (installed only when absent).
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python test tools (aiosmtpd, ...), pinned in tests/requirements.txt, in a
# git-ignored virtual environment; reinstalled when the pins change.
if [ ! -x .venv/bin/python ] || ! cmp -s tests/requirements.txt .venv/requirements.installed; then
  log "installing Python test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .venv/requirements.installed
fi

# The browser tests' driver (playwright-core, no browser download: it drives
# Debian's Chromium) and axe-core, pinned in tests/browser/package-lock.json;
# installed again when any of them is missing (an older node_modules).
for package in playwright-core axe-core; do
  if [ ! -d "tests/browser/node_modules/$package" ]; then
    log "installing the browser tests' packages ($package was missing)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    break
  fi
done

# The relying-party tests' Node library (openid-client, pinned in
# tests/rp/package-lock.json).
if [ ! -d tests/rp/node_modules/openid-client ]; then
  log "installing openid-client"
  (cd tests/rp && npm ci --no-audit --no-fund --loglevel=error)
fi

# The resource-server recipes' Node library (jose, pinned in
# tests/recipes/package-lock.json); the Python recipe's PyJWT is in
# tests/requirements.txt.
if [ ! -d tests/recipes/node_modules/jose ]; then
  log "installing jose"
  (cd tests/recipes && npm ci --no-audit --no-fund --loglevel=error)
fi

log "cargo test"
# One build of the test profile serves the unit tests, the integration
# binary (tests/api) and the doc tests, of the server and of
# crates/tessera-resource (every feature).
cargo test --locked --workspace --all-features --all-targets
cargo test --locked --workspace --all-features --doc
