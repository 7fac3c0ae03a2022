#!/usr/bin/env bash
# Kite vs QEMU benchmark harness.
#
# Builds the guest workloads (benches/guest), then runs each one REPS times under
# Kite and under qemu-system-riscv64 (same command line), checks every run printed
# its PASS line (Linux: KITE-BOOT-OK), and prints a markdown table of median wall
# times and the Kite/QEMU ratio, plus Kite's -d stats counters from one extra run (with
# host instructions per guest instruction from `perf stat`, where perf works).
# With --update-doc the table replaces the block between the BENCH-TABLE markers
# in docs/performance.md.
#
# Usage: benches/run.sh [--reps N] [--kite PATH] [--only NAME[,NAME..]] [--update-doc] [-- EXTRA_KITE_ARGS..]
# Needs: riscv64-unknown-elf-gcc (picolibc), qemu-system-riscv64, python3, a release
# build of kite (cargo build --release -p kite), ../shared/images/riscv64 for Linux.
# Not a test: timings are noisy; nothing here is run by `cargo test`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=3
KITE="$ROOT/target/release/kite"
QEMU=qemu-system-riscv64
ONLY=""
UPDATE=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift 2 ;;
        --kite) KITE=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --update-doc) UPDATE=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "usage: $0 [--reps N] [--kite PATH] [--only a,b] [--update-doc] [-- kite args]" >&2; exit 2 ;;
    esac
done
OUT="$ROOT/target/bench"
make -s -C "$ROOT/benches/guest" OUT="$OUT" >/dev/null
[ -x "$KITE" ] || { echo "no kite binary at $KITE (cargo build --release -p kite)" >&2; exit 1; }
IMG="$ROOT/../shared/images/riscv64"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# name | expected output | args (shared by both emulators)
WORKLOADS=(
    "int|PASS bench_int|-M virt -m 256M -nographic -bios none -kernel $OUT/int.elf"
    "fp|PASS bench_fp|-M virt -m 256M -nographic -bios none -kernel $OUT/fp.elf"
    "mem|PASS bench_mem|-M virt -m 256M -nographic -bios none -kernel $OUT/mem.elf"
    "branchy|PASS bench_branchy|-M virt -m 256M -nographic -bios none -kernel $OUT/branchy.elf"
    "calls|PASS bench_calls|-M virt -m 256M -nographic -bios none -kernel $OUT/calls.elf"
    "code|PASS bench_code|-M virt -m 256M -nographic -bios none -kernel $OUT/code.elf"
    "par-smp1|PASS bench_par|-M virt -smp 1 -m 256M -nographic -bios none -kernel $OUT/par.elf"
    "par-smp2|PASS bench_par|-M virt -smp 2 -m 256M -nographic -bios none -accel tcg,thread=multi -kernel $OUT/par.elf"
)
if [ -f "$IMG/Image" ]; then
    for smp in 1 2; do
        WORKLOADS+=("linux-smp$smp|KITE-BOOT-OK|-M virt -smp $smp -m 256M -nographic -bios default -kernel $IMG/Image -initrd $IMG/initramfs.cpio.gz -append console=ttyS0@kite.test=poweroff")
    done
fi

# Run one command; print its wall time in seconds, fail if the marker is missing.
timed() {
    local marker=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    timeout 300 "$@" </dev/null >"$TMP/out" 2>&1 || true
    t1=$(date +%s.%N)
    if ! grep -q "$marker" "$TMP/out"; then
        echo "FAILED: $* (no '$marker'):" >&2
        tail -5 "$TMP/out" >&2
        echo "nan"
        return
    fi
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

declare -A KMED QMED
# `perf stat` for host instructions per guest instruction, if it works here.
PERF=""
if perf stat -x, -e instructions:u -o /dev/null true >/dev/null 2>&1; then PERF=1; fi
median() { python3 -c "import sys,statistics as s; v=[float(x) for x in sys.argv[1:] if x!='nan']; print(f'{s.median(v):.3f}' if v else 'nan')" "$@"; }

TABLE="$TMP/table.md"
STATS="$TMP/stats.md"
{
    echo "| workload | Kite (s) | QEMU (s) | Kite/QEMU |"
    echo "|---|---:|---:|---:|"
} >"$TABLE"
{
    echo "| workload | guest insns | TBs translated / baseline / Cranelift | frontend us/TB | baseline us/TB | Cranelift us/TB | softmmu slow path / insn | ITLB hits / misses | dispatches | chains linked | indirect exits | host insns / guest insn |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$STATS"
for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name marker args <<<"$w"
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
    # '@' stands for a space inside one argument (the kernel command line).
    read -r -a argv <<<"$args"
    argv=("${argv[@]//@/ }")
    kt=(); qt=()
    for _ in $(seq "$REPS"); do
        kt+=("$(timed "$marker" "$KITE" "${EXTRA[@]}" "${argv[@]}")")
        qt+=("$(timed "$marker" "$QEMU" "${argv[@]}")")
    done
    km=$(median "${kt[@]}"); qm=$(median "${qt[@]}")
    KMED[$name]=$km; QMED[$name]=$qm
    ratio=$(python3 -c "k,q='$km','$qm'; print('n/a' if 'nan' in (k,q) else f'{float(k)/float(q):.2f}')")
    echo "| $name | $km | $qm | $ratio |" >>"$TABLE"
    echo "$name: kite ${kt[*]}  qemu ${qt[*]}" >&2
    # Host instructions (user space, all threads) of the same run, where perf works.
    rm -f "$TMP/perf.txt"
    if [ -n "$PERF" ]; then
        timeout 300 perf stat -x, -e instructions:u -o "$TMP/perf.txt" \
            "$KITE" "${EXTRA[@]}" "${argv[@]}" -d stats -D "$TMP/stats.txt" </dev/null >/dev/null 2>&1 || true
    else
        timeout 300 "$KITE" "${EXTRA[@]}" "${argv[@]}" -d stats -D "$TMP/stats.txt" </dev/null >/dev/null 2>&1 || true
    fi
    python3 - "$name" "$TMP/stats.txt" "$TMP/perf.txt" >>"$STATS" <<'PY'
import re, sys
name, path, perf = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    host = next(int(l.split(",")[0]) for l in open(perf) if "instructions" in l)
except (OSError, StopIteration, ValueError):
    host = None
try:
    text = open(path).read()
except OSError:
    print(f"| {name} | (no stats) ||||||||||")
    sys.exit()
v = {k: int(x) for k, x in re.findall(r"(\w+): (\d+),", text)}
g = lambda k: v.get(k, 0)
per = lambda a, b: f"{g(a) / g(b) / 1000:.1f}" if g(b) else "-"
ins = g("insns") or 1
print(f"| {name} | {g('insns')} | {g('tbs_translated')} / {g('tbs_baseline')} / {g('tbs_compiled')} "
      f"| {per('translate_ns_total', 'tbs_translated')} | {per('baseline_ns_total', 'tbs_baseline')} "
      f"| {per('compile_ns_total', 'tbs_compiled')} | {g('tlb_slow_path') / ins:.5f} | {g('itlb_hits')} / {g('itlb_misses')} "
      f"| {g('dispatches')} | {g('chains_linked')} | {g('indirect')} "
      f"| {f'{host / ins:.1f}' if host else '-'} |")
PY
done

# Scaling with a second vCPU: smp1 time / smp2 time (par: the same work split over
# two harts, higher is better; linux: a second hart should cost nothing, >= 1).
SCALE="$TMP/scale.md"
{
    echo "| with -smp 2 | Kite smp1/smp2 | QEMU smp1/smp2 |"
    echo "|---|---:|---:|"
    for pre in par linux; do
        k1=${KMED[$pre-smp1]:-nan}; k2=${KMED[$pre-smp2]:-nan}; q1=${QMED[$pre-smp1]:-nan}; q2=${QMED[$pre-smp2]:-nan}
        [ "$k1" = nan ] || [ "$k2" = nan ] && continue
        python3 -c "
f=lambda a,b: 'n/a' if 'nan' in (a,b) else f'{float(a)/float(b):.2f}'
print(f'| $pre | {f(\"$k1\",\"$k2\")} | {f(\"$q1\",\"$q2\")} |')"
    done
} >"$SCALE"

echo
cat "$TABLE"
echo
cat "$SCALE"
echo
cat "$STATS"

if [ "$UPDATE" = 1 ]; then
    DOC="$ROOT/docs/performance.md"
    {
        echo "<!-- BENCH-TABLE-BEGIN (generated by benches/run.sh --update-doc) -->"
        echo "Measured $(date -u +%Y-%m-%d) on $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(qemu-system-riscv64 --version | head -1),"
        echo "command: \`benches/run.sh --reps $REPS${EXTRA:+ -- ${EXTRA[*]}}\` (median of $REPS wall-clock runs each)."
        echo
        cat "$TABLE"
        echo
        cat "$SCALE"
        echo
        echo "Kite counters (\`-d stats\`, one run):"
        echo
        cat "$STATS"
        echo "<!-- BENCH-TABLE-END -->"
    } >"$TMP/block.md"
    python3 - "$DOC" "$TMP/block.md" <<'PY'
import sys
doc, block = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(doc).read()
b, e = "<!-- BENCH-TABLE-BEGIN", "<!-- BENCH-TABLE-END -->"
if b in text and e in text:
    i, j = text.index(b), text.index(e) + len(e)
    text = text[:i] + block + text[j:]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
PY
    echo "updated $DOC" >&2
fi
