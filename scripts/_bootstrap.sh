# Sourced by scripts/fwdproxy, scripts/test and scripts/check: make .venv from
# pyproject.toml when it is missing, or reinstall when pyproject.toml changed since.
# $1: the extras needed: "" (run), "test" or "dev" (dev includes test).
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

# One stamp per extras set, holding the hash of the pyproject.toml it was installed from.
hash="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
installed() {
    local name
    for name in "$@"; do
        [ -f "$venv/.installed-$name" ] && [ "$(cat "$venv/.installed-$name")" = "$hash" ] && return 0
    done
    return 1
}
case "$extras" in
    "") satisfied_by=(base test dev) ;;
    test) satisfied_by=(test dev) ;;
    *) satisfied_by=("$extras") ;;
esac

if [ ! -x "$venv/bin/python" ] || ! installed "${satisfied_by[@]}"; then
    python="$(find_python)"
    [ -x "$venv/bin/python" ] || { echo "creating $venv" >&2; "$python" -m venv "$venv"; }
    spec="$root"
    [ -n "$extras" ] && spec="$root[$extras]"
    echo "installing fwdproxy${extras:+[$extras]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
    echo "$hash" >"$venv/.installed-${extras:-base}"
fi
