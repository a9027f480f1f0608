# Sourced by scripts/serve and scripts/test: install what is missing, nothing more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

apt_install() {  # apt_install PACKAGE... (only when a command is missing)
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to apt-get install $*; install them and rerun" >&2
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python_deps() {  # python_deps EXTRA  (e.g. "" or "[test]")
  local marker=".setup-stamp$1"
  if [ ! -f "$marker" ] || [ pyproject.toml -nt "$marker" ] \
     || ! "$PY" -c "import signaling, aiortc, av" 2>/dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check -e ".$1" 2>&1 \
      | grep -v -E "^WARNING: (Location|Running pip as)" || true
    touch "$marker"
  fi
}

node_deps() {  # hls.js for the replay page, from the npm registry, only when missing
  if [ ! -f node_modules/hls.js/dist/hls.min.js ]; then
    if ! command -v npm >/dev/null; then
      apt_install nodejs npm || { echo "setup: no npm; replay falls back to native HLS/MP4" >&2; return 0; }
    fi
    npm install --no-audit --no-fund --loglevel=error >/dev/null \
      || echo "setup: npm install failed; replay falls back to native HLS/MP4" >&2
  fi
}
