# Sourced by bin/test, bin/facelivenet and bin/demo: make sure .venv exists and holds this
# package (editable) with its test and export extras. Reinstalls when setup.cfg changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV ..." >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.facelivenet-$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  echo "installing facelivenet and its dependencies into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test,export]" >&2
  rm -f "$VENV"/.facelivenet-*
  touch "$STAMP"
fi
