# shellcheck shell=bash
# Sourced by scripts/serve and scripts/test: make ./.venv exist and hold the pinned requirements.
# Creates .venv with python3 (>= 3.11; override with PYTHON=/path/to/python) when it is missing
# or broken, and runs pip only when the requirements files (or the Python) changed since the
# last install, so re-runs cost a few milliseconds. Expects the project root as the working directory.

_python_ok() {  # is "$1" a Python >= 3.11?
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

_find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Python >= 3.11 is needed (set PYTHON=/path/to/python3.11 or newer)" >&2
    return 1
}

# ensure_venv REQUIREMENTS_FILE: install that file (pip install -r) into .venv unless already done.
ensure_venv() {
    local requirements=$1 python stamp want
    mkdir -p .venv
    # One installer at a time (scripts/serve and scripts/test may start together).
    exec 9<.venv
    flock 9
    if ! _python_ok .venv/bin/python; then
        python=$(_find_python) || return 1
        echo "creating .venv with $("$python" --version 2>&1)" >&2
        "$python" -m venv --clear .venv
    fi
    stamp=".venv/.installed-$requirements"
    # Every requirements file counts: requirements-dev.txt includes requirements.txt.
    want=$( { .venv/bin/python --version; cat requirements*.txt; } | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing $requirements into .venv" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
        echo "$want" >"$stamp"
        # What it includes (-r file) is installed now too.
        sed -n 's/^-r[[:space:]]*//p' "$requirements" | while read -r included; do
            echo "$want" >".venv/.installed-$included"
        done
    fi
    exec 9<&-
}
