#!/usr/bin/env bash
# Install the benchmark peers into bench/.venv-peers, a virtualenv of their own.
#
# The peers (uvicorn, starlette, aiohttp, tornado, waitress, ...) are never project dependencies:
# they live only in this git-ignored virtualenv, which bench/run.py uses to start them. Running
# this script again is harmless: the virtualenv is reused and pip skips what is installed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-peers"
python="${PYTHON:-python3}"

peers=(
    tornado
    uvicorn
    h11
    httptools
    uvloop
    aiohttp
    waitress
    starlette
)

if [ ! -x "$venv/bin/python" ]; then
    echo "+ $python -m venv $venv"
    "$python" -m venv "$venv"
fi
echo "+ $venv/bin/python -m pip install --quiet --upgrade pip"
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "+ $venv/bin/python -m pip install --quiet ${peers[*]}"
"$venv/bin/python" -m pip install --quiet "${peers[@]}"

"$venv/bin/python" - <<'PY'
from importlib.metadata import version

for name in ("uvicorn", "h11", "httptools", "uvloop", "starlette", "aiohttp", "tornado", "waitress"):
    print(f"  {name:10} {version(name)}")
PY

missing=0
for tool in wrk taskset; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing=1
        echo "missing: $tool"
    fi
done
if [ "$missing" -ne 0 ]; then
    echo "install the load generator and taskset with:"
    echo "    sudo apt-get install -y wrk util-linux"
    exit 1
fi
echo "peers ready in $venv; wrk: $(command -v wrk)"
