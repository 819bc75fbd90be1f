#!/usr/bin/env bash
# Reproduce real kernel crash dumps with QEMU from Debian packages (not run in CI; see docs/vmcore.md).
#
#   scripts/make-vmcores.sh --module-src DIR [--out DIR] [--kernel-version 6.1.0-56-amd64] [TYPE...]
#
# TYPE is what the test module writes to /proc/crashme (default: null bug warn softlockup).
# DIR holds the module source (crashme.c with a /proc/crashme write handler; `../shared/vmcores/module`
# has the one the shared dumps were made with). Per TYPE, OUT/TYPE/ receives:
#   serial.log          the serial console (ground truth for the oops text)
#   vmcore.elf          QEMU dump-guest-memory, ELF (section headers before program headers)
#   vmcore.kdump-zlib   makedumpfile -c -d 31         (Debian kdump-tools' default)
#   vmcore.kdump-lzo    makedumpfile -l -d 31         (RHEL/Fedora core_collector default)
#   vmcore.flat         makedumpfile -F -c -d 31      (the flattened stream kdump pipes over ssh)
#   vmcore.elf.gz       makedumpfile -E -d 31 | gzip  (a filtered /proc/vmcore copy)
#   dmesg.txt           makedumpfile --dump-dmesg     (the oracle for `crashfleet dmesg`)
#
# Needs root or a user allowed to apt-get download; installs: qemu-system-x86 busybox-static makedumpfile
# gcc make kmod cpio linux-headers-<version>. Runs about 20 s per crash under TCG (no KVM needed).
set -euo pipefail

KVER="6.1.0-56-amd64"
OUT="vmcores"
MODSRC=""
TYPES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --module-src) MODSRC="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --kernel-version) KVER="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) TYPES+=("$1"); shift ;;
  esac
done
[ ${#TYPES[@]} -gt 0 ] || TYPES=(null bug warn softlockup)
[ -n "$MODSRC" ] && [ -f "$MODSRC/crashme.c" ] || { echo "error: --module-src DIR with crashme.c is required" >&2; exit 2; }

need=()
for cmd in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static makedumpfile:makedumpfile \
           gcc:gcc make:make cpio:cpio python3:python3; do
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
[ -d "/usr/src/linux-headers-$KVER" ] || need+=("linux-headers-$KVER")
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# 1. The kernel image and its modules, straight from Debian's package (no install on this host).
( cd "$WORK" && apt-get download -qq "linux-image-$KVER" )
dpkg-deb -x "$WORK"/linux-image-"$KVER"_*.deb "$WORK/kernel"
VMLINUZ="$WORK/kernel/boot/vmlinuz-$KVER"

# 2. The crash module, built DKMS-style against Debian's headers.
mkdir -p "$WORK/module"
cp "$MODSRC/crashme.c" "$WORK/module/"
echo "obj-m := crashme.o" > "$WORK/module/Kbuild"
make -s -C "/usr/src/linux-headers-$KVER" M="$WORK/module" modules

# 3. A busybox initramfs whose /init crashes the kernel the way the TYPE asks.
build_initramfs() {
  local type="$1" root="$WORK/initramfs-$1"
  mkdir -p "$root"/{bin,proc,sys,dev}
  cp "$(command -v busybox)" "$root/bin/busybox"
  cp "$WORK/module/crashme.ko" "$root/crashme.ko"
  cat > "$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo 1 > /proc/sys/kernel/panic_on_oops
echo 1 > /proc/sys/kernel/panic_on_warn
echo 1 > /proc/sys/kernel/softlockup_panic
insmod /crashme.ko
echo $type > /proc/crashme
sleep 60
EOF
  chmod +x "$root/init"
  ( cd "$root" && find . | cpio -o -H newc --quiet | gzip -9 ) > "$WORK/initramfs-$type.gz"
}

# 4. Boot, wait for the panic on the serial console, dump guest memory over QMP, quit.
qmp() {  # qmp SOCKET JSON...: send commands after the capabilities handshake, print the replies
  python3 - "$@" <<'EOF'
import json, socket, sys, time
sock = socket.socket(socket.AF_UNIX)
for _ in range(100):
    try:
        sock.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.1)
f = sock.makefile("rw")
f.readline()
for cmd in ['{"execute": "qmp_capabilities"}', *sys.argv[2:]]:
    f.write(cmd + "\n"); f.flush()
    while True:
        reply = json.loads(f.readline())
        if "return" in reply or "error" in reply:
            print(json.dumps(reply)); break
EOF
}

for type in "${TYPES[@]}"; do
  dir="$OUT/$type"
  mkdir -p "$dir"
  rm -f "$dir"/vmcore.* "$dir/dmesg.txt"
  build_initramfs "$type"
  sock="$WORK/qmp-$type.sock"
  qemu-system-x86_64 -m 256M -smp 2 -device vmcoreinfo -nographic -no-reboot \
    -kernel "$VMLINUZ" -initrd "$WORK/initramfs-$type.gz" \
    -append "console=ttyS0 panic=0 crashtype=$type" \
    -serial "file:$dir/serial.log" -monitor none -qmp "unix:$sock,server=on,wait=off" &
  qemu_pid=$!
  for _ in $(seq 1 600); do
    grep -q "end Kernel panic" "$dir/serial.log" 2>/dev/null && break
    sleep 0.2
  done
  grep -q "end Kernel panic" "$dir/serial.log" || { echo "error: $type did not panic" >&2; kill "$qemu_pid"; exit 1; }
  qmp "$sock" "{\"execute\": \"dump-guest-memory\", \"arguments\": {\"paging\": false, \"protocol\": \"file:$dir/vmcore.elf\"}}"
  qmp "$sock" '{"execute": "quit"}' || true
  wait "$qemu_pid" || true

  makedumpfile -c -d 31 "$dir/vmcore.elf" "$dir/vmcore.kdump-zlib"
  makedumpfile -l -d 31 "$dir/vmcore.elf" "$dir/vmcore.kdump-lzo"
  makedumpfile -F -c -d 31 "$dir/vmcore.elf" > "$dir/vmcore.flat"
  makedumpfile -E -d 31 "$dir/vmcore.elf" "$WORK/filtered.elf"
  gzip -9 -c "$WORK/filtered.elf" > "$dir/vmcore.elf.gz"
  rm -f "$WORK/filtered.elf"
  makedumpfile --dump-dmesg "$dir/vmcore.kdump-zlib" "$dir/dmesg.txt"
  echo "$type: $(ls "$dir" | tr '\n' ' ')"
done
