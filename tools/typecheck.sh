#!/usr/bin/env bash
# mypy over the runtime side. The import package `mestream` is spread over the checkout's
# top-level folders (pyproject's package-dir), which mypy cannot follow through the editable
# install's import hook; so lay the package out as the installed tree would be, with links,
# and check that.
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/typecheck
rm -rf "$root" && mkdir -p "$root/mestream"
for folder in engine cameras export models plugins bench; do
    ln -s "../../../$folder" "$root/mestream/$folder"
done
for file in mestream/*.py; do
    ln -s "../../../$file" "$root/mestream/"
done
cd "$root"
exec ../../.venv/bin/mypy --config-file ../../pyproject.toml \
    -p mestream.engine -p mestream.cameras -p mestream.export -p mestream.plugins "$@"
