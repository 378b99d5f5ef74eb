#!/usr/bin/env bash
# Install the pinned schemathesis into a virtualenv under ~/.cache, keyed by its
# version, and print the path of its `schemathesis` command. Instant when present.
set -euo pipefail
version=4.32.5
venv="$HOME/.cache/folio-schemathesis/$version"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "schemathesis==$version" >&2
fi
echo "$venv/bin/schemathesis"
