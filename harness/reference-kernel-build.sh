#!/usr/bin/env bash
# The kernel build of the kernel's own LUO runner (7.3's tools/testing/selftests/liveupdate/
# vmtest.sh), reproduced for a tree that may predate it: its fragment (liveupdate/config plus
# config.<arch>) written into an empty .config, `make olddefconfig`, the boot image and
# headers_install. The anchor the harness's own kernel build is measured against (README,
# "Kernel build cost"). Prints wall and CPU seconds (user + system of make and its children).
#   harness/reference-kernel-build.sh x86_64|arm64 SRC_TREE BUILD_DIR [JOBS]
set -euo pipefail
arch=$1 src=$2 out=$3 jobs=${4:-$(($(nproc) + 1))}
case $arch in
  x86_64) karch=x86 image=bzImage cross= serial="CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y" ;;
  arm64) karch=arm64 image=Image cross=aarch64-linux-gnu- serial="CONFIG_SERIAL_AMBA_PL011=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y" ;;
  *) echo "unknown arch $arch (x86_64 or arm64)" >&2; exit 2 ;;
esac
rm -rf "$out" && mkdir -p "$out"
cat > "$out/.config" <<CFG
CONFIG_BLK_DEV_INITRD=y
CONFIG_KEXEC_FILE=y
CONFIG_KEXEC_HANDOVER=y
CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT=y
CONFIG_KEXEC_HANDOVER_DEBUGFS=y
CONFIG_KEXEC_HANDOVER_DEBUG=y
CONFIG_LIVEUPDATE=y
CONFIG_LIVEUPDATE_TEST=y
CONFIG_MEMFD_CREATE=y
CONFIG_TMPFS=y
CONFIG_SHMEM=y
$serial
CFG
m() { make -s -C "$src" O="$out" ARCH=$karch ${cross:+CROSS_COMPILE=$cross} "$@"; }
start=$(date +%s.%N)
m olddefconfig
m -j"$jobs" "$image" >/dev/null
m headers_install INSTALL_HDR_PATH="$out/headers" >/dev/null
end=$(date +%s.%N)
times > "$out/.times" # in this shell: a pipeline's subshell has no children of its own
cpu=$(tail -1 "$out/.times" | awk '{ split($1,u,"m"); split($2,s,"m"); printf "%.0f", u[1]*60+u[2]+s[1]*60+s[2] }')
objs=$(find "$out" -name '*.o' | wc -l)
printf 'reference %s: wall %.0f s, cpu %s s, %s objects\n' "$arch" "$(echo "$end - $start" | bc)" "$cpu" "$objs"
