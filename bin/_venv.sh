# Sourced by bin/test, bin/facelivenet and bin/demo: make sure .venv exists and holds this
# package (editable) with its test, export and teacher extras. Reinstalls when setup.cfg changes.
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
  LOG="$VENV/install.log"
  echo "installing facelivenet and its dependencies into $VENV (log: $LOG) ..." >&2
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
         "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[test,export,teacher]"; } >"$LOG" 2>&1; then
    tail -n 25 "$LOG" >&2
    echo "error: installing into $VENV failed (full log: $LOG)" >&2
    exit 2
  fi
  rm -f "$VENV"/.facelivenet-*
  touch "$STAMP"
fi
