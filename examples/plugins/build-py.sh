#!/usr/bin/env bash
# Build a Python plugin into a WebAssembly component, reproducibly (byte-identical output for
# identical sources, tools and WIT).
#
#   examples/plugins/build-py.sh <source dir> <module> <wit dir> <world> <out.wasm>
#   e.g. examples/plugins/build-py.sh examples/plugins/promo-discount app wit plugin promo-discount.wasm
#
# Needs componentize-py 0.25.0 (examples/plugins/requirements.txt) in $PLUGWATCH_VENV (default
# target/tools/venv under the repository root) and a C compiler (cc) for the build-time shim
# tools/reproducible.c, which is compiled into target/tools/ on first use. Linux x86_64 only.
#
# What makes the output reproducible, and why each step is needed:
#   - only the *.py files of the source directory are copied into a fresh staging directory:
#     the interpreter lists the directory, so stray files such as __pycache__/ (which
#     componentize-py itself writes into -p directories) or the built .wasm would change it;
#   - VIRTUAL_ENV points at an empty venv-shaped directory, so componentize-py does not append
#     the building machine's site-packages to the guest's Python path;
#   - LD_PRELOAD=reproducible.so fixes entropy, clocks, file metadata and directory order as
#     seen by the interpreter that componentize-py snapshots (see tools/reproducible.c).
set -euo pipefail

if [ $# -ne 5 ]; then
  echo "usage: $0 <source dir> <module> <wit dir> <world> <out.wasm>" >&2
  exit 2
fi
src=$1 module=$2 wit=$3 world=$4 out=$5

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${PLUGWATCH_VENV:-$root/target/tools/venv}
tool=$venv/bin/componentize-py
shim=$root/target/tools/reproducible.so

if [ ! -x "$tool" ]; then
  echo "error: $tool not found; install it with:" >&2
  echo "  python3 -m venv $venv && $venv/bin/pip install -r $here/requirements.txt" >&2
  exit 1
fi
if [ ! -f "$shim" ] || [ "$here/tools/reproducible.c" -nt "$shim" ]; then
  mkdir -p "$(dirname "$shim")"
  ${CC:-cc} -O2 -shared -fPIC -o "$shim.tmp.$$" "$here/tools/reproducible.c" -ldl
  mv "$shim.tmp.$$" "$shim"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/plugwatch-py-build.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/app" "$stage/venv/lib/site-packages" "$stage/tmp"
(cd "$src" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 | tar --null -T - -cf -) |
  tar -C "$stage/app" -xf -

out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
wit_abs=$(cd "$wit" && pwd)

# The shim must be loaded by the Python process that runs componentize-py itself (a process
# started under it dies on its first stat call before the shim is loaded), so run the venv's
# interpreter directly rather than through a wrapper script.
(
  cd "$stage"
  env REPRO_ROOT="$stage" VIRTUAL_ENV="$stage/venv" TMPDIR="$stage/tmp" PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$shim" \
    "$venv/bin/python3" "$tool" -q -d "$wit_abs" -w "$world" componentize "$module" -p app -o "$out_abs.tmp"
)
mv "$out_abs.tmp" "$out_abs"
