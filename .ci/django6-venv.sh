#!/usr/bin/env bash
# Make (or refresh) the Python 3.12 virtualenv in which the Django 6 tests run.
#
# Django 6 needs Python >= 3.12 while the project's main test run uses the machine's Python
# 3.11 (Django 5.2 + the django-tasks backport). tests/integration/test_django_backend.py runs
# the same Django checks with this venv's interpreter. The venv lives outside the git tree
# (other worktrees share it) and holds Django 6 plus pydelayed's runtime dependencies only:
# pydelayed itself is imported from the checkout with PYTHONPATH=src, so the venv never goes
# stale when the code changes.
#
#   DELAYED_DJANGO6_VENV   where to make it (default /work/venvs/django6)
#   DELAYED_PYTHON312      the interpreter to build it from (default: found below)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DELAYED_DJANGO6_VENV:-/work/venvs/django6}"

find_python312() {
  local candidate
  if [[ -n "${DELAYED_PYTHON312:-}" ]]; then echo "$DELAYED_PYTHON312"; return; fi
  for candidate in python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      command -v "$candidate"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then  # a pyenv shim refuses unless the version is selected
    local version
    version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -V | tail -1 || true)"
    if [[ -n "$version" ]]; then echo "$(pyenv root)/versions/$version/bin/python3.12"; return; fi
  fi
  return 1
}

PY312="$(find_python312)" || { echo "django6-venv: no Python 3.12 found (set DELAYED_PYTHON312)" >&2; exit 1; }
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY312" -m venv "$VENV"
fi
# pydelayed's runtime dependencies, read from pyproject.toml so they never drift.
mapfile -t DEPS < <("$VENV/bin/python" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
for dep in project["dependencies"]:
    print(dep)
PY
)
"$VENV/bin/python" -m pip install -q "${DEPS[@]}" 'Django>=6.0,<7'
"$VENV/bin/python" -c 'import django, sys; print(f"django6 venv: Python {sys.version.split()[0]}, Django {django.get_version()}")'
