#!/bin/sh
# Build the board's own interpreter for the conformance tests: the MicroPython unix port at
# micropython ced340d (v1.11-64, the core of MaixPy-v1 and CanMV K210 firmware) with 32-bit
# floats (MICROPY_FLOAT_IMPL_FLOAT, as MaixPy's mpconfigport.h sets it), into OUT_DIR/micropython
# (and OUT_DIR/micropython-double, the stock double-float build, for comparison).
#
# usage: tools/build_micropython.sh OUT_DIR [SRC_DIR]
#   SRC_DIR  a folder holding a build.sh that builds it (a prepared source bundle): used as is.
#            Without it: a shallow clone of github.com/micropython/micropython at ced340d,
#            built the same way (needs git, cc, make, python3 and internet; ~1 min on 2 cores).
set -eu
OUT=${1:?usage: tools/build_micropython.sh OUT_DIR [SRC_DIR]}
SRC=${2:-}
if [ -n "$SRC" ]; then
    if [ ! -f "$SRC/build.sh" ]; then
        echo "error: MICROPY_SRC=$SRC has no build.sh: pass a folder with one, or leave MICROPY_SRC empty to clone micropython ced340d" >&2
        exit 2
    fi
    exec sh "$SRC/build.sh" "$OUT"
fi
for tool in git cc make python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: building micropython needs $tool on PATH" >&2; exit 2; }
done
COMMIT=ced340d739e84737dd5c8e6b4ab9af2ea44e29e7
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/micropython
git init -q "$SRC"
git -C "$SRC" fetch -q --depth 1 https://github.com/micropython/micropython "$COMMIT" || {
    echo "error: could not fetch micropython $COMMIT from GitHub (offline?): pass MICROPY_SRC=DIR with a build.sh" >&2; exit 2; }
git -C "$SRC" checkout -q FETCH_HEAD
cat > "$SRC/ports/unix/mpconfigport_f32.h" <<'H'
#include <mpconfigport.h>
#undef MICROPY_FLOAT_IMPL
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)
H
JOBS=$(nproc 2>/dev/null || echo 2)
CW='CWARN=-Wall -Wpointer-arith -Wuninitialized -Wno-error'
# Submodule features off (not needed by device/); ced340d's unix_mphal.c uses CLOCK_MONOTONIC
# without <time.h>, which current glibc rejects: -include time.h.
OPTS='MICROPY_PY_FFI=0 MICROPY_PY_USSL=0 MICROPY_SSL_AXTLS=0 MICROPY_PY_BTREE=0 MICROPY_PY_THREAD=0 MICROPY_STANDALONE=0'
make -s -C "$SRC/mpy-cross" -j"$JOBS" "$CW"
# shellcheck disable=SC2086
make -s -C "$SRC/ports/unix" -j"$JOBS" "$CW" $OPTS BUILD=build-f32 PROG=micropython_f32 \
    "CFLAGS_EXTRA=-DMP_CONFIGFILE=\"<mpconfigport_f32.h>\" -include time.h"
# shellcheck disable=SC2086
make -s -C "$SRC/ports/unix" -j"$JOBS" "$CW" $OPTS "CFLAGS_EXTRA=-include time.h"
cp "$SRC/ports/unix/micropython_f32" "$OUT/micropython"
cp "$SRC/ports/unix/micropython" "$OUT/micropython-double"
echo 'import sys; print(sys.implementation, "float32:", 1.0 + 2.0 ** -30 == 1.0)' | "$OUT/micropython"
