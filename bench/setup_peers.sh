#!/usr/bin/env bash
# Install the peers in their own Python 3.12 venv (oban-py needs 3.12; the others run there too),
# so the project's own environment is left alone. The harness finds it at bench/.venv or
# /tmp/pyd-bench312, or wherever BENCH_PEER_PYTHON points.
set -euo pipefail
PY=${PYTHON312:-$(command -v python3.12 || echo /root/.pyenv/versions/3.12.1/bin/python)}
VENV=${1:-$(dirname "$0")/.venv}
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "pgqueuer==1.6.0" asyncpg "procrastinate==3.10.0" "chancy==0.26.0" "oban==0.7.0" psutil py-spy
"$VENV/bin/python" -c "import pgqueuer, procrastinate, chancy, oban; print('peers installed in $VENV')"
