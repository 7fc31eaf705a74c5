#!/usr/bin/env bash
# find_python.sh 3.12: the path of a working Python 3.12 interpreter, or nothing (exit 1).
# Tries `python3.12` on PATH, then pyenv's newest 3.12.x (pyenv's shims answer only for the
# versions it has activated, so the interpreter is asked for by version).
set -uo pipefail
version=$1

works() { "$1" -c 'import sys' >/dev/null 2>&1; }

if command -v "python$version" >/dev/null && works "python$version"; then
    command -v "python$version"
    exit 0
fi
if command -v pyenv >/dev/null; then
    newest=$(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}(\.[0-9]+)?$" | sort -V | tail -1)
    if [ -n "$newest" ]; then
        found=$(PYENV_VERSION=$newest pyenv which "python$version" 2>/dev/null)
        if [ -n "$found" ] && works "$found"; then
            echo "$found"
            exit 0
        fi
    fi
fi
exit 1
