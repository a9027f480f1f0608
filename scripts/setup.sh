# Sourced by scripts/serve and scripts/test: install what is missing, nothing more.
# Python packages go into a project virtual environment (.venv), never into the system
# python3: Debian 12 refuses that (PEP 668, externally-managed-environment).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BASE_PY=${PYTHON:-python3}
VENV=${CLASSROOM_VENV:-.venv}
PY="$VENV/bin/python"

apt_install() {  # apt_install PACKAGE... (only when a command is missing)
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to apt-get install $*; install them and rerun" >&2
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  echo "setup: apt-get install $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

make_venv() {  # the project's virtual environment, from whatever python3 is first on PATH
  if ! command -v "$BASE_PY" >/dev/null; then
    apt_install python3
  fi
  if ! "$BASE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: $BASE_PY is $("$BASE_PY" --version 2>&1); Python 3.11 or newer is needed" >&2
    return 1
  fi
  if [ -x "$PY" ] && "$PY" -c 'import pip' 2>/dev/null; then
    return 0
  fi
  rm -rf "$VENV"
  if ! "$BASE_PY" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv/ensurepip separately (python3.11-venv); headers for any build.
    local ver
    ver=$("$BASE_PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-venv" python3-dev
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV"
  fi
  echo "setup: virtual environment $VENV ($("$PY" --version))" >&2
}

python_deps() {  # python_deps EXTRA  (e.g. "" or "[test]"); a failed install stops here
  make_venv
  local marker="$VENV/.setup-stamp$1"
  if [ ! -f "$marker" ] || [ pyproject.toml -nt "$marker" ] \
     || ! "$PY" -c "import signaling, aiortc, av" 2>/dev/null; then
    echo "setup: pip install -e .$1 into $VENV" >&2
    # (pipefail: the pipeline fails when pip does; the filter only hides pip.conf noise)
    if ! "$PY" -m pip install -q --disable-pip-version-check -e ".$1" 2>&1 \
         | { grep -v -E "^WARNING: (Location|Running pip as)" || true; }; then
      echo "setup: pip install failed (output above); nothing was started" >&2
      return 1
    fi
    touch "$marker"
  fi
}
