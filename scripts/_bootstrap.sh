# Sourced by scripts/fwdproxy and scripts/test: make .venv from pyproject.toml when it is
# missing or when pyproject.toml changed since it was made (a stamp file records its hash).
# $1: the extras to install, e.g. "" or "test".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "fwdproxy needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
stamp="$venv/.fwdproxy-installed"
have=""
[ -f "$stamp" ] && have="$(cat "$stamp")"
# A venv made with more extras serves a command that needs fewer.
if [ ! -x "$venv/bin/python" ] || { [ "$have" != "$want" ] && [ "${have%-test}" != "${want%-base}" ]; }; then
    python="$(find_python)"
    [ -x "$venv/bin/python" ] || { echo "creating $venv" >&2; "$python" -m venv "$venv"; }
    spec="$root"
    [ -n "$extras" ] && spec="$root[$extras]"
    echo "installing fwdproxy${extras:+[$extras]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
    echo "$want" >"$stamp"
fi
