#!/usr/bin/env bash
# Reproduce real kernel crash dumps with QEMU from Debian packages (not run in CI; see docs/vmcore.md).
#
#   scripts/make-vmcores.sh --module-src DIR [--out DIR] [--arch amd64|arm64] [--suite SUITE]
#                           [--kernel-version 6.1.0-56-amd64] [--formats all|small] [--cache DIR] [TYPE...]
#
# TYPE is what the test module writes to /proc/crashme (default: null bug warn softlockup), or one
# the init script makes itself without the module: `sysrq` (echo c > /proc/sysrq-trigger) and
# `oom` (panic_on_oom). DIR holds the module source (crashme.c with a /proc/crashme write handler;
# `../shared/vmcores/module` has the one the shared dumps were made with).
#
# --suite picks the Debian suite the kernel comes from (bookworm, bookworm-backports, trixie,
# bullseye): apt reads a private sources file and package lists under the work directory (never
# /etc/apt). --arch arm64 boots `qemu-system-aarch64 -M virt -cpu max` under TCG, builds the module
# with the cross compiler (gcc-aarch64-linux-gnu) and runs Debian's arm64 makedumpfile under
# qemu-aarch64-static (the host's makedumpfile only reads dumps of its own architecture).
# Per TYPE, OUT/TYPE/ receives:
#   serial.log          the serial console (ground truth for the oops text)
#   vmcore.elf          QEMU dump-guest-memory, ELF (section headers before program headers)
#   vmcore.kdump-zlib   makedumpfile -c -d 31         (Debian kdump-tools' default)
#   vmcore.kdump-lzo    makedumpfile -l -d 31         (RHEL/Fedora core_collector default)   [all]
#   vmcore.flat         makedumpfile -F -c -d 31      (the flattened stream kdump pipes over ssh) [all]
#   vmcore.elf.gz       makedumpfile -E -d 31 | gzip  (a filtered /proc/vmcore copy)         [all]
#   dmesg.txt           makedumpfile --dump-dmesg     (the oracle for `crashfleet dmesg`)
#   makedumpfile-refused.txt  when makedumpfile cannot read the dump: its message; vmcore.elf is kept
# --cache DIR keeps the private apt lists and downloaded packages between runs.
# --formats small keeps only serial.log, vmcore.kdump-zlib and dmesg.txt (what project fixtures need).
#
# Needs root (apt-get); installs: qemu-system-x86 or qemu-system-arm (+ qemu-user-static,
# gcc-aarch64-linux-gnu for arm64) busybox-static makedumpfile gcc make cpio xz-utils.
# Runs about 20 s per crash under TCG on x86_64, about a minute on arm64 (no KVM needed).
set -euo pipefail

ARCH="amd64"
SUITE="bookworm"
KVER=""
OUT="vmcores"
MODSRC=""
FORMATS="all"
CACHE=""
TYPES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --module-src) MODSRC="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --arch) ARCH="$2"; shift 2 ;;
    --suite) SUITE="$2"; shift 2 ;;
    --kernel-version) KVER="$2"; shift 2 ;;
    --formats) FORMATS="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) TYPES+=("$1"); shift ;;
  esac
done
[ ${#TYPES[@]} -gt 0 ] || TYPES=(null bug warn softlockup)
[ -n "$KVER" ] || KVER="6.1.0-56-$ARCH"
case "$ARCH" in
  amd64) QEMU=qemu-system-x86_64; QEMU_PKG=qemu-system-x86; CONSOLE=ttyS0; MACHINE=() ;;
  arm64) QEMU=qemu-system-aarch64; QEMU_PKG=qemu-system-arm; CONSOLE=ttyAMA0; MACHINE=(-M virt -cpu max) ;;
  *) echo "error: --arch must be amd64 or arm64, not $ARCH" >&2; exit 2 ;;
esac
case "$FORMATS" in all|small) ;; *) echo "error: --formats must be all or small" >&2; exit 2 ;; esac
case "$SUITE" in bookworm|bookworm-backports|trixie|bullseye) ;;
  *) echo "error: --suite must be bookworm, bookworm-backports, trixie or bullseye" >&2; exit 2 ;;
esac
needs_module=0
for type in "${TYPES[@]}"; do
  case "$type" in sysrq|oom) ;; *) needs_module=1 ;; esac
done
if [ "$needs_module" = 1 ]; then
  [ -n "$MODSRC" ] && [ -f "$MODSRC/crashme.c" ] || { echo "error: --module-src DIR with crashme.c is required" >&2; exit 2; }
fi
HOST_ARCH="$(dpkg --print-architecture)"

need=()
for cmd in "$QEMU:$QEMU_PKG" busybox:busybox-static makedumpfile:makedumpfile \
           gcc:gcc make:make cpio:cpio python3:python3 xz:xz-utils; do
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
if [ "$ARCH" != "$HOST_ARCH" ]; then
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# 1. A private apt view of the suite (both architectures), so the host's sources stay untouched.
APTDIR="${CACHE:-$WORK}/apt-$SUITE-$ARCH"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs" "$WORK/root"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
{
  echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian ${SUITE%%-*} main"
  [ "$SUITE" = "${SUITE%%-*}" ] || echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main"
  # The guest's userland (busybox, arm64 makedumpfile) always comes from bookworm, like the host's.
  [ "${SUITE%%-*}" = bookworm ] || echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main"
  [ "$SUITE" = bookworm ] && echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main"
  [ "$SUITE" = bullseye ] && echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bullseye-security main"
  true
} > "$APTDIR/sources.list"
APT=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
     -o "APT::Architectures::=$HOST_ARCH" -o "APT::Architectures::=$ARCH" -o Debug::NoLocking=1)
[ -n "$(ls "$APTDIR/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${APT[@]}" update -qq 2>&1 | grep -v unsandboxed || true
fetch() {  # fetch PACKAGE...: download into $WORK/debs and unpack into $WORK/root
  ( cd "$APTDIR/debs" && apt-get "${APT[@]}" download -qq "$@" 2>&1 | grep -v unsandboxed || true )
  for p in "$@"; do
    local name="${p%%[:/]*}"
    for deb in "$APTDIR/debs/${name}"_*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
  done
}

# 2. The kernel image and its modules, straight from Debian's package (no install on this host).
fetch "linux-image-$KVER:$ARCH"
VMLINUZ="$WORK/root/boot/vmlinuz-$KVER"
FWCFG="$(find "$WORK/root" -path "*/$KVER/*" -name 'qemu_fw_cfg.ko*' -print -quit)"
case "$FWCFG" in *.xz) xz -dc "$FWCFG" > "$WORK/qemu_fw_cfg.ko" ;; *) cp "$FWCFG" "$WORK/qemu_fw_cfg.ko" ;; esac
if [ "$ARCH" = arm64 ]; then
  fetch busybox-static:arm64/bookworm makedumpfile:arm64/bookworm libdw1:arm64/bookworm libelf1:arm64/bookworm \
        liblzo2-2:arm64/bookworm zlib1g:arm64/bookworm libc6:arm64/bookworm libzstd1:arm64/bookworm \
        liblzma5:arm64/bookworm libbz2-1.0:arm64/bookworm
  BUSYBOX="$WORK/root/bin/busybox"
  MAKEDUMPFILE=(qemu-aarch64-static -L "$WORK/root" "$WORK/root/usr/bin/makedumpfile")
  CROSS=(CROSS_COMPILE=aarch64-linux-gnu-)
else
  BUSYBOX="$(command -v busybox)"
  MAKEDUMPFILE=(makedumpfile)
  CROSS=()
fi

# 3. The crash module, built DKMS-style against Debian's headers for that kernel (unpacked, not installed).
if [ "$needs_module" = 1 ]; then
  COMMON="$(apt-cache "${APT[@]}" show "linux-headers-$KVER:$ARCH" | sed -n 's/^Depends:.*\(linux-headers-[^ ,]*-common\).*/\1/p' | sort -u)"
  KBUILD="$(apt-cache "${APT[@]}" show "linux-headers-$KVER:$ARCH" | sed -n 's/^Depends:.*\(linux-kbuild-[^ ,]*\).*/\1/p' | sort -u)"
  fetch "linux-headers-$KVER:$ARCH" "$COMMON" "$KBUILD:$HOST_ARCH"
  HDRS="$WORK/root/usr/src/linux-headers-$KVER"
  sed -i "s|include /usr/src/|include $WORK/root/usr/src/|" "$HDRS/Makefile"
  MAKEVARS=("${CROSS[@]}")
  # Each suite's kernel is built with its own gcc (trixie: gcc-14). Without it, this host's gcc
  # builds a module that loads all the same once the options only the newer compiler knows
  # (and BTF, which needs pahole and vmlinux) are switched off.
  want_cc="$(sed -n 's/^CC = .*gcc-\([0-9][0-9]*\).*/\1/p' "$HDRS/.kernelvariables")"
  prefix="${CROSS[*]:-}"; prefix="${prefix#CROSS_COMPILE=}"
  if [ -n "$want_cc" ] && ! command -v "${prefix:-$(gcc -dumpmachine)-}gcc-$want_cc" >/dev/null; then
    echo "note: gcc-$want_cc is not installed; building the module with this host's gcc" >&2
    MAKEVARS+=(CC="${prefix:-$(gcc -dumpmachine)-}gcc" CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT= CONFIG_DEBUG_INFO_BTF_MODULES=)
    # Without -fmin-function-alignment the older gcc misaligns arm64's ftrace call-ops patch
    # sites, and loading the module WARNs ("Misaligned patch-site"), fatal with panic_on_warn:
    # the module gets no ftrace patch sites at all.
    NO_FTRACE='ccflags-remove-y += $(CC_FLAGS_FTRACE)'
  elif ! command -v pahole >/dev/null; then
    # The suite's own compiler is here (bookworm-backports' 6.12 is built with bookworm's gcc-12),
    # but BTF for the module needs pahole (package dwarves): the module loads without it.
    MAKEVARS+=(CONFIG_DEBUG_INFO_BTF_MODULES=)
  fi
  # kbuild's programs (fixdep, modpost, objtool) from a newer suite need its C library: run each
  # through that suite's dynamic loader (--argv0 keeps Debian's per-arch dispatchers working).
  KB="$(readlink -f "$HDRS/scripts")/.."
  needs_libc=0
  for f in $(find "$KB" -type f -perm -u+x); do
    file "$f" | grep -q ELF || continue
    out="$(timeout 10 "$f" </dev/null 2>&1 || true)"
    case "$out" in *GLIBC_*"not found"*) needs_libc=1 ;; esac
  done
  if [ "$needs_libc" = 1 ]; then
    libelf=libelf1t64; apt-cache "${APT[@]}" show "$libelf:$HOST_ARCH" >/dev/null 2>&1 || libelf=libelf1
    base="${SUITE%%-*}"
    fetch "libc6:$HOST_ARCH/$base" "$libelf:$HOST_ARCH/$base" "zlib1g:$HOST_ARCH/$base" "libzstd1:$HOST_ARCH/$base"
    LIBS="$WORK/root/usr/lib/$(gcc -dumpmachine)"
    LDSO="$(find "$LIBS" -maxdepth 1 -name 'ld-linux*.so.*' -print -quit)"
    for f in $(find "$KB" -type f -perm -u+x); do
      file "$f" | grep -q ELF || continue
      mv "$f" "$f.elf"
      printf '#!/bin/sh\nexec %s --library-path %s --argv0 "$0" %s "$@"\n' "$LDSO" "$LIBS" "$f.elf" > "$f"
      chmod +x "$f"
    done
  fi
  mkdir -p "$WORK/module"
  cp "$MODSRC/crashme.c" "$WORK/module/"
  # As DKMS builds it: __FILE__ (kernel BUG at ..., WARNING at ...) names /usr/src/crashme-1.0,
  # not this run's temporary directory.
  printf 'obj-m := crashme.o\nccflags-y += -fmacro-prefix-map=%s=/usr/src/crashme-1.0\n%s\n' "$WORK/module" "${NO_FTRACE:-}" > "$WORK/module/Kbuild"
  make -s -C "$HDRS" M="$WORK/module" "${MAKEVARS[@]}" modules
fi

# 4. A busybox initramfs whose /init crashes the kernel the way the TYPE asks.
build_initramfs() {
  local type="$1" root="$WORK/initramfs-$1"
  mkdir -p "$root"/{bin,proc,sys,dev}
  cp "$BUSYBOX" "$root/bin/busybox"
  cp "$WORK/qemu_fw_cfg.ko" "$root/qemu_fw_cfg.ko"
  [ "$needs_module" = 1 ] && cp "$WORK/module/crashme.ko" "$root/crashme.ko"
  case "$type" in
    sysrq) trigger="echo c > /proc/sysrq-trigger" ;;
    oom) trigger="echo 1 > /proc/sys/vm/panic_on_oom; tail /dev/zero" ;;
    *) trigger="insmod /crashme.ko; echo $type > /proc/crashme" ;;
  esac
  # A 5 s hung-task panic only where the hung task is the crash: on 5.10 (no preemption) the
  # soft lockup's spinning CPU stalls RCU, and a kworker freeing the module's init memory in
  # synchronize_rcu would be reported as hung long before the 20 s soft-lockup threshold.
  hung_panic=0; hung_secs=120
  [ "$type" = hung ] && { hung_panic=1; hung_secs=5; }
  cat > "$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /qemu_fw_cfg.ko
echo 1 > /proc/sys/kernel/panic_on_oops
echo 1 > /proc/sys/kernel/panic_on_warn
echo 1 > /proc/sys/kernel/softlockup_panic
echo $hung_panic > /proc/sys/kernel/hung_task_panic
echo $hung_secs > /proc/sys/kernel/hung_task_timeout_secs
echo 1 > /proc/sys/kernel/sysrq
$trigger
sleep 600
EOF
  chmod +x "$root/init"
  ( cd "$root" && find . | cpio -o -H newc --quiet | gzip -9 ) > "$WORK/initramfs-$type.gz"
}

# 5. Boot, wait for the panic on the serial console, dump guest memory over QMP, quit.
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

failed=()
for type in "${TYPES[@]}"; do
  dir="$OUT/$type"
  mkdir -p "$dir"
  rm -f "$dir"/vmcore.* "$dir/dmesg.txt" "$dir/serial.log"
  build_initramfs "$type"
  sock="$WORK/qmp-$type.sock"
  "$QEMU" "${MACHINE[@]}" -m 256M -smp 2 -device vmcoreinfo -nographic -no-reboot \
    -kernel "$VMLINUZ" -initrd "$WORK/initramfs-$type.gz" \
    -append "console=$CONSOLE panic=0 crashtype=$type" \
    -serial "file:$dir/serial.log" -monitor none -qmp "unix:$sock,server=on,wait=off" &
  qemu_pid=$!
  # Done at "---[ end Kernel panic", or 10 s after "Kernel panic - not syncing" with no more
  # console output: 5.10's double-fault panic stops before printing its end line.
  quiet=0; size=0
  for _ in $(seq 1 3000); do
    grep -q "end Kernel panic" "$dir/serial.log" 2>/dev/null && break
    now="$(stat -c %s "$dir/serial.log" 2>/dev/null || echo 0)"
    if [ "$now" = "$size" ] && grep -q "Kernel panic - not syncing" "$dir/serial.log" 2>/dev/null; then
      quiet=$((quiet + 1)); [ "$quiet" -ge 50 ] && break
    else
      quiet=0; size="$now"
    fi
    sleep 0.2
  done
  if ! grep -q "Kernel panic - not syncing" "$dir/serial.log"; then  # the other types may still work
    echo "error: $type did not panic within 600 s (see $dir/serial.log)" >&2
    kill "$qemu_pid"; wait "$qemu_pid" || true
    failed+=("$type")
    continue
  fi
  sleep 1  # let the other CPU stop and the console drain
  qmp "$sock" "{\"execute\": \"dump-guest-memory\", \"arguments\": {\"paging\": false, \"protocol\": \"file:$dir/vmcore.elf\"}}"
  qmp "$sock" '{"execute": "quit"}' || true
  wait "$qemu_pid" || true
  # makedumpfile 1.7.2 looks for the program headers right after the ELF header (it ignores
  # e_phoff); QEMU's arm64 dumps put section headers there and write e_ehsize = 8. Move the
  # program headers to offset 64 and drop the sections; segment offsets stay valid.
  python3 - "$dir/vmcore.elf" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    h = bytearray(f.read(64))
    (phoff,) = struct.unpack_from("<Q", h, 32)
    (phnum,) = struct.unpack_from("<H", h, 56)
    if phoff != 64:
        f.seek(phoff)
        ph = f.read(56 * phnum)
        struct.pack_into("<QQ", h, 32, 64, 0)
        struct.pack_into("<H", h, 52, 64)
        struct.pack_into("<HHH", h, 58, 64, 0, 0)
        f.seek(0)
        f.write(bytes(h) + ph)
EOF

  # makedumpfile 1.7.2 refuses some kernels (arm64 with 4 KiB pages and 52-bit VA: "PAGE SIZE
  # 0x1000 and VA Bits 52 not supported"): keep QEMU's ELF, which is then the only dump, and say why.
  if ! "${MAKEDUMPFILE[@]}" -c -d 31 "$dir/vmcore.elf" "$dir/vmcore.kdump-zlib" 2> "$WORK/mdf.err"; then
    cat "$WORK/mdf.err" >&2
    grep -v '^$' "$WORK/mdf.err" > "$dir/makedumpfile-refused.txt" || true
    rm -f "$dir/vmcore.kdump-zlib"
    echo "$type: makedumpfile refused the dump; kept vmcore.elf: $(ls "$dir" | tr '\n' ' ')"
    continue
  fi
  if [ "$FORMATS" = all ]; then
    "${MAKEDUMPFILE[@]}" -l -d 31 "$dir/vmcore.elf" "$dir/vmcore.kdump-lzo"
    "${MAKEDUMPFILE[@]}" -F -c -d 31 "$dir/vmcore.elf" > "$dir/vmcore.flat"
    "${MAKEDUMPFILE[@]}" -E -d 31 "$dir/vmcore.elf" "$WORK/filtered.elf"
    gzip -9 -c "$WORK/filtered.elf" > "$dir/vmcore.elf.gz"
    rm -f "$WORK/filtered.elf"
  else
    rm -f "$dir/vmcore.elf"
  fi
  "${MAKEDUMPFILE[@]}" --dump-dmesg "$dir/vmcore.kdump-zlib" "$dir/dmesg.txt"
  echo "$type: $(ls "$dir" | tr '\n' ' ')"
done
[ ${#failed[@]} -eq 0 ] || { echo "error: no panic for: ${failed[*]}" >&2; exit 1; }
