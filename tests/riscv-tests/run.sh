#!/usr/bin/env bash
# Build the official RISC-V ISA tests (riscv-tests) and run them on Kite's `-M spike`.
#
# usage: tests/riscv-tests/run.sh RISCV_TESTS_DIR [SUITE...]
#   RISCV_TESTS_DIR  a riscv-tests checkout with its env/ submodule (isa/, env/p, env/v)
#   SUITE            default: rv64ui rv64um rv64ua rv64uc rv64uf rv64ud rv64mi rv64si
#                    rv64uzba rv64uzbb rv64uzbs
# environment:
#   KITE=path        emulator binary (default: target/release/kite of this repo)
#   EMU="cmd args"   run another emulator instead, e.g. EMU="qemu-system-riscv64"
#   VARIANTS="p v"   which variants to build (p: physical, v: virtual memory; default both)
#   JOBS=N           parallel runs (default 2)
#   OUT=dir          build directory (default: a fresh mktemp dir)
#
# Each test is run as `$KITE -M spike -bios none -nographic -kernel T` under a 10 s timeout; HTIF
# makes the exit status tohost>>1, i.e. 0 on pass and the failing TESTNUM otherwise.
# The suite's own isa/Makefile flags are used (per-suite -march), plus `_zicsr_zifencei` for GCC >= 12.
# Prints one line per failure, a count per suite and variant, and a final "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${1:?usage: run.sh RISCV_TESTS_DIR [SUITE...]}
shift
[ -d "$src/isa" ] && [ -d "$src/env/p" ] || { echo "run.sh: $src is not a riscv-tests checkout (isa/, env/p missing)" >&2; exit 2; }
suites=${*:-rv64ui rv64um rv64ua rv64uc rv64uf rv64ud rv64mi rv64si rv64uzba rv64uzbb rv64uzbs}
KITE=${KITE:-$repo/target/release/kite}
EMU=${EMU:-$KITE}
VARIANTS=${VARIANTS:-p v}
JOBS=${JOBS:-2}
OUT=${OUT:-$(mktemp -d)}
CC=${RISCV_GCC:-riscv64-unknown-elf-gcc}
command -v "$CC" >/dev/null || { echo "run.sh: $CC not found (Debian: gcc-riscv64-unknown-elf)" >&2; exit 2; }
[ "$EMU" != "$KITE" ] || [ -x "$KITE" ] || { echo "run.sh: $KITE not built (cargo build --release -p kite)" >&2; exit 2; }

# Tests not applicable to Kite's RV64GC+Zba/Zbb/Zbs hart (see docs/conformance.md).
skip() {
  case "$1" in
    rv64ua-*-amocas_*) echo "Zacas not implemented" ;;
    rv64si-*-spmpaddr|rv64si-*-spmpcfg) echo "S-mode PMP (SPMP) not implemented" ;;
    *) return 1 ;;
  esac
}

# Per-suite -march as in riscv-tests' isa/Makefile: only rv64uc is built with C (some tests,
# e.g. jalr, count 4-byte instructions), the bit-manipulation suites add their extension.
march() {
  case $1 in
    rv64uc) echo rv64gc ;;
    rv64uzba) echo rv64g_zba ;;
    rv64uzbb) echo rv64g_zbb ;;
    rv64uzbs) echo rv64g_zbs ;;
    *) echo rv64g ;;
  esac
}
# The -v- environment (env/v/vm.c) includes <string.h>: use picolibc's headers where the toolchain has them.
vflags=(-std=gnu99 -O2 -DENTROPY=0x$(printf '%x' $$))
if echo '#include <string.h>' | "$CC" --specs=picolibc.specs -E -x c - >/dev/null 2>&1; then vflags+=(--specs=picolibc.specs); fi
mkdir -p "$OUT"
list=()
for s in $suites; do
  frag="$src/isa/$s/Makefrag"
  [ -f "$frag" ] || { echo "run.sh: no $frag" >&2; continue; }
  # The test names: the "<suite>_sc_tests = \ ..." continuation lines of the Makefrag.
  names=$(sed -n "/^${s}_sc_tests *=/,/^[[:space:]]*$/p" "$frag" | sed "s/^${s}_sc_tests *=//; s/\\\\//g" | tr -s ' \t' '\n\n' | grep -v '^$')
  flags=(-march="$(march "$s")_zicsr_zifencei" -mabi=lp64 -static -mcmodel=medany -fvisibility=hidden -nostdlib -nostartfiles)
  for v in $VARIANTS; do
    # Only the suites whose Makefrag lists -v- tests have virtual-memory variants.
    [ "$v" = v ] && ! grep -q "${s}_v_tests" "$frag" && continue
    for t in $names; do
      name="$s-$v-$t"
      if why=$(skip "$name"); then echo "SKIP $name ($why)"; continue; fi
      [ -f "$src/isa/$s/$t.S" ] || { echo "MISSING $name"; continue; }
      if [ "$v" = p ]; then
        "$CC" "${flags[@]}" -I"$src/env/p" -I"$src/isa/macros/scalar" -T"$src/env/p/link.ld" \
          "$src/isa/$s/$t.S" -o "$OUT/$name" 2>"$OUT/$name.build" || { echo "BUILD-FAIL $name"; continue; }
      else
        "$CC" "${flags[@]}" "${vflags[@]}" -I"$src/env/v" -I"$src/isa/macros/scalar" -T"$src/env/v/link.ld" \
          "$src/env/v/entry.S" "$src"/env/v/*.c "$src/isa/$s/$t.S" -o "$OUT/$name" 2>"$OUT/$name.build" \
          || { echo "BUILD-FAIL $name"; continue; }
      fi
      list+=("$name")
    done
  done
done

runone() {
  timeout 10 $EMU -M spike -bios none -nographic -kernel "$OUT/$1" >"$OUT/$1.log" 2>&1
  echo "$1 $?"
}
export -f runone
export OUT EMU
printf '%s\n' "${list[@]}" | xargs -P "$JOBS" -I{} bash -c 'runone {}' >"$OUT/results"

pass=0; fail=0
while read -r name rc; do
  if [ "$rc" = 0 ]; then pass=$((pass + 1)); else
    fail=$((fail + 1))
    case $rc in 124) why="timeout" ;; *) why="TESTNUM $rc" ;; esac
    echo "FAIL $name ($why)"
  fi
done <"$OUT/results"
echo "per suite (passed/run):"
for s in $suites; do for v in $VARIANTS; do
  n=$(grep -c "^$s-$v-" "$OUT/results"); [ "$n" = 0 ] && continue
  p=$(grep -c "^$s-$v-.* 0$" "$OUT/results")
  printf '  %-10s %s  %3d/%d\n' "$s" "$v" "$p" "$n"
done; done
echo "binaries and logs: $OUT"
echo "riscv-tests: $pass passed, $fail failed"
[ "$fail" = 0 ]
