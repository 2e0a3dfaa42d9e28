#!/usr/bin/env bash
# Install the peers in their own Python 3.12 venv (oban-py needs 3.12; the others run there too),
# so the project's own environment is left alone. The harness finds it at bench/.venv (kept out
# of git), /tmp/pyd-bench312, or wherever BENCH_PEER_PYTHON points.
#
#   bench/setup_peers.sh            # bench/.venv
#   bench/setup_peers.sh /some/dir  # elsewhere (then set BENCH_PEER_PYTHON=/some/dir/bin/python)
#
# Versions are pinned so a full run compares the same peers as the README's figures. uvloop is
# installed because pgqueuer's and oban-py's own command-line runners use it when present: the
# drivers in peers/ run every peer on it (BENCH_PEER_LOOP=asyncio turns it off).
set -euo pipefail
VENV=${1:-$(cd "$(dirname "$0")" && pwd)/.venv}
PACKAGES=("pgqueuer==1.6.0" "asyncpg==0.32.0" "procrastinate==3.10.0" "chancy==0.26.0" "oban==0.7.0"
          "uvloop==0.23.0" "psutil")
CHECK="import pgqueuer, asyncpg, procrastinate, chancy, oban, uvloop"

# A pyenv shim named python3.12 exists even when 3.12 is not the selected version and then
# fails, so each candidate is run before it is trusted.
find_python312() {
  local candidates=("${PYTHON312:-}" python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    while read -r version; do
      candidates+=("$(pyenv root)/versions/$version/bin/python3.12")
    done < <(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' || true)
  fi
  candidates+=(/root/.pyenv/versions/3.12*/bin/python3.12)
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    if "$py" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  echo "peers already installed in $VENV"
  exit 0
fi
if ! PY=$(find_python312); then
  echo "setup_peers.sh: no working Python 3.12 found (set PYTHON312=/path/to/python3.12)" >&2
  exit 1
fi
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}"
"$VENV/bin/python" -c "$CHECK; print('peers installed in $VENV')"
