#!/bin/bash
# Build Kite's riscv64 Linux test guest (OpenSBI-booted S-mode kernel Image +
# busybox initramfs) from Debian bookworm packages only.
#
# Adapted from the project's shared image recipe (../shared/images/build.sh,
# same kernel fragment and /init), reduced to the riscv64 guest.
#
#   ./build.sh [-o OUTDIR] [step...]     steps: deps kernel busybox initramfs info
#   ./build.sh --help                    (no step = all of them, in that order)
#
# Outputs in OUTDIR (default: ./out next to this script):
#   Image, vmlinux, config, initramfs.cpio.gz, buildinfo.txt
# Boot them:  kite -M virt -smp 2 -m 256M -nographic -bios default \
#               -kernel OUTDIR/Image -initrd OUTDIR/initramfs.cpio.gz \
#               -append "console=ttyS0 kite.test=poweroff"
#
# Env: WORK (build trees, default /tmp/kite-linux-build), JOBS (default nproc),
#      SKIP_APT=1 (do not apt-get install), SOURCE_DATE_EPOCH.
# A from-scratch build takes about 12 minutes on 2 cores; re-runs are
# incremental.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
WORK=${WORK:-/tmp/kite-linux-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
KVER_PKG=linux-source-6.12
KSRC=$WORK/linux-source-6.12
FRAGMENT=$HERE/riscv64.config
CROSS=riscv64-linux-gnu-
ALL_STEPS=(deps kernel busybox initramfs info)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() { echo "build.sh: $*" >&2; exit 2; }

# ----------------------------------------------------------- arguments
steps=()
while [ $# -gt 0 ]; do
    case $1 in
    -h|--help) usage; exit 0 ;;
    -o) [ $# -ge 2 ] || die "-o needs a directory"; OUT=$2; shift 2 ;;
    -o*) OUT=${1#-o}; shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
        case " ${ALL_STEPS[*]} " in
        *" $1 "*) steps+=("$1") ;;
        *) die "unknown step '$1' (steps: ${ALL_STEPS[*]})" ;;
        esac
        shift ;;
    esac
done
[ ${#steps[@]} -gt 0 ] || steps=("${ALL_STEPS[@]}")
[ -f "$FRAGMENT" ] || die "missing kernel config fragment $FRAGMENT"

# Deterministic build metadata (same stamp as the shared images).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}   # 2025-01-01 UTC
export KBUILD_BUILD_TIMESTAMP=${KBUILD_BUILD_TIMESTAMP:-"Wed Jan  1 00:00:00 UTC 2025"}
export KBUILD_BUILD_USER=kite KBUILD_BUILD_HOST=kite KBUILD_BUILD_VERSION=1
export KCONFIG_NOTIMESTAMP=1 LC_ALL=C TZ=UTC

log() { printf '\n=== %s\n' "$*" >&2; }
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

step_deps() {
    [ "${SKIP_APT:-0}" = 1 ] && return 0
    log "apt: install build dependencies"
    $SUDO apt-get install -y --no-install-recommends \
        build-essential make gcc libc6-dev flex bison bc cpio xz-utils gzip \
        libelf-dev libssl-dev dpkg-dev \
        gcc-riscv64-linux-gnu libc6-dev-riscv64-cross "$KVER_PKG" opensbi
    # `apt-get source busybox` needs deb-src entries: add them for the
    # archives already configured, only if there are none.
    if [ -z "$(apt-cache showsrc busybox 2>/dev/null || true)" ]; then
        log "apt: adding deb-src entries"
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
                $SUDO tee /etc/apt/sources.list.d/kite-deb-src.sources >/dev/null
        else
            grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | sed 's/^deb /deb-src /' |
                $SUDO tee /etc/apt/sources.list.d/kite-deb-src.list >/dev/null
        fi
        $SUDO apt-get update
    fi
}

unpack_kernel() {
    if [ ! -f "$KSRC/Makefile" ]; then
        [ -f "/usr/src/$KVER_PKG.tar.xz" ] || die "/usr/src/$KVER_PKG.tar.xz missing (run the deps step)"
        log "unpack /usr/src/$KVER_PKG.tar.xz"
        mkdir -p "$WORK"
        tar -C "$WORK" -xf "/usr/src/$KVER_PKG.tar.xz"
    fi
}

step_kernel() {
    unpack_kernel
    local b=$WORK/build-riscv64
    local mk=(make -C "$KSRC" O="$b" ARCH=riscv CROSS_COMPILE=$CROSS)
    mkdir -p "$b"
    log "configure: tinyconfig + $(basename "$FRAGMENT")"
    "${mk[@]}" -s tinyconfig
    ARCH=riscv CROSS_COMPILE=$CROSS "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$b" "$b/.config" "$FRAGMENT" >/dev/null
    "${mk[@]}" -s olddefconfig
    # Every line of the fragment must survive olddefconfig.
    local bad=0 line
    while IFS= read -r line; do
        case $line in
        CONFIG_*=*|"# CONFIG_"*" is not set")
            grep -qxF -- "$line" "$b/.config" || { echo "config mismatch: want '$line'" >&2; bad=1; } ;;
        esac
    done < "$FRAGMENT"
    [ $bad = 0 ] || die "kernel config is incomplete"
    log "build Image (-j$JOBS)"
    "${mk[@]}" -j"$JOBS" Image
    mkdir -p "$OUT"
    install -m 644 "$b/arch/riscv/boot/Image" "$OUT/Image"
    install -m 644 "$b/.config" "$OUT/config"
    install -m 644 "$b/vmlinux" "$OUT/vmlinux"
}

busybox_src() {
    [ -d "$WORK/src" ] || return 0
    find "$WORK/src" -maxdepth 1 -type d -name 'busybox-*' | sort | tail -n1
}

step_busybox() {
    mkdir -p "$WORK/src"
    local src
    src=$(busybox_src)
    if [ -z "$src" ]; then
        log "apt-get source busybox"
        (cd "$WORK/src" && apt-get source busybox)
        src=$(busybox_src)
    fi
    local b=$WORK/build-busybox-riscv64
    local mk=(make -C "$src" O="$b" CROSS_COMPILE=$CROSS)
    mkdir -p "$b"
    log "configure busybox ($src): defconfig + static"
    "${mk[@]}" -s defconfig >/dev/null
    sed -i 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' "$b/.config"
    { yes '' || :; } | "${mk[@]}" -s oldconfig >/dev/null
    grep -qx 'CONFIG_STATIC=y' "$b/.config" || die "busybox: CONFIG_STATIC did not stick"
    log "build busybox (-j$JOBS)"
    "${mk[@]}" -j"$JOBS" busybox busybox.links
    if ${CROSS}readelf -l "$b/busybox" | grep -q INTERP; then die "busybox is not static"; fi
}

# The test /init: mounts, prints KITE-BOOT-OK, powers off with
# kite.test=poweroff (reboots with kite.test=reboot), else a shell loop.
write_init() {
    cat > "$1" <<'INIT'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname kite
echo KITE-BOOT-OK
read -r cmdline < /proc/cmdline
case " $cmdline " in
*" kite.test=poweroff "*) poweroff -f ;;
*" kite.test=reboot "*) reboot -f ;;
esac
while :; do
    setsid cttyhack sh -l
    sleep 1
done
INIT
}

step_initramfs() {
    unpack_kernel
    local b=$WORK/build-busybox-riscv64 d
    [ -x "$b/busybox" ] || die "no busybox build in $b (run the busybox step)"
    gcc -O2 -o "$WORK/gen_init_cpio" "$KSRC/usr/gen_init_cpio.c"
    d=$(mktemp -d "$WORK/initramfs.XXXXXX")
    write_init "$d/init"
    {
        for dir in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /etc /root /mnt /var; do
            echo "dir $dir 755 0 0"
        done
        echo "dir /tmp 1777 0 0"
        echo "dir /run 755 0 0"
        echo "nod /dev/console 600 0 0 c 5 1"
        echo "nod /dev/null 666 0 0 c 1 3"
        echo "file /init $d/init 755 0 0"
        echo "file /bin/busybox $b/busybox 755 0 0"
        echo "slink /etc/mtab /proc/mounts 777 0 0"
        sed -e 's#^/*#/#' "$b/busybox.links" | grep -vx /bin/busybox | sort -u |
            while read -r a; do echo "slink $a /bin/busybox 777 0 0"; done
    } > "$d/list"
    mkdir -p "$OUT"
    log "pack $OUT/initramfs.cpio.gz"
    "$WORK/gen_init_cpio" -t "$SOURCE_DATE_EPOCH" "$d/list" | gzip -9 -n > "$OUT/initramfs.cpio.gz.tmp"
    mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
    rm -rf "$d"
}

step_info() {
    mkdir -p "$OUT"
    {
        echo "# generated by roms/linux/build.sh"
        dpkg-query -W -f '${Package} ${Version} ${Architecture}\n' \
            "$KVER_PKG" gcc-riscv64-linux-gnu libc6-dev-riscv64-cross opensbi 2>/dev/null || true
        busybox_src | sed 's#.*/#busybox source: #'
        if [ -f "$KSRC/Makefile" ]; then echo "kernel: $(make -s -C "$KSRC" kernelversion)"; fi
        echo
        (cd "$OUT" && for f in Image vmlinux config initramfs.cpio.gz; do
            if [ -f "$f" ]; then printf '%10d  %s  %s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" "$f"; fi
        done)
    } > "$OUT/buildinfo.txt"
    cat "$OUT/buildinfo.txt"
}

for s in "${steps[@]}"; do
    "step_$s"
done
