#!/usr/bin/env bash
# Build every plugin component, the examples and the test fixtures, into <out dir>/<name>.wasm.
#
#   examples/plugins/build-all.sh <out dir>
#
# `cargo xtask plugins` runs this into target/plugins, and `cargo xtask plugins --bless` then copies
# the examples over their committed copies (examples/plugins/<name>/<name>.wasm).
#
# Needs the tools described in README.md (target/tools/venv, examples/plugins/node_modules, cc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ $# -ne 1 ]; then
  echo "usage: $0 <out dir>" >&2
  exit 2
fi
out=$1
mkdir -p "$out"

dest() { # <source dir> <name>
  echo "$out/$2.wasm"
}

py() { # <source dir> <name>
  examples/plugins/build-py.sh "$1" app wit plugin "$(dest "$1" "$2")"
}
js() { # <source dir> <name> [--with-http]
  node examples/plugins/build-js.mjs "$1/plugin.js" wit plugin "$(dest "$1" "$2")" "${@:3}"
}

py examples/plugins/promo-discount promo-discount
js examples/plugins/loyalty-points loyalty-points
py tests/fixtures/plugins/escape-py escape-py
js tests/fixtures/plugins/escape-js escape-js --with-http
