#!/usr/bin/env bash
# Boots Debian's kernel (which has the BPF LSM) in QEMU with an initramfs holding ebpfh and a
# test program, and runs tests/vm/init there: the execve-abort response end to end.
# Usage: tests/vm/run.sh [path/to/ebpfh]   (default target/release/ebpfh)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/ebpfh}
work=target/vm
mkdir -p "$work"

# Debian's current 6.1 kernel image, fetched once.
if ! ls "$work"/vmlinuz-* >/dev/null 2>&1; then
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
	(cd "$work" && apt-get download "$pkg" >/dev/null)
	dpkg -x "$work"/"$pkg"_*.deb "$work/kernel"
	cp "$work"/kernel/boot/vmlinuz-* "$work"/
	rm -rf "$work/kernel" "$work"/*.deb
fi
kernel=$(ls "$work"/vmlinuz-* | head -1)

root=$work/root
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,tmp,dev}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cp tests/vm/init "$root/init"
chmod +x "$root/init"
cc -O2 -static -o "$root/execafter" tests/fixtures/execafter.c
cp "$bin" "$root/ebpfh"
# ebpfh's shared libraries, at the paths the dynamic loader expects.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

# TCG: software emulation works everywhere (nested KVM hangs on some hosts) and boots in seconds.
accel=tcg
log=$work/console.log
timeout 600 qemu-system-x86_64 -machine accel=$accel -m 1024 -smp 2 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,yama,apparmor,bpf" \
	> "$log" 2>&1 || true
grep -E "kernel |EBPFH-VM-RESULT|execve_denied|ebpfh:" "$log" || true
if grep -q "EBPFH-VM-RESULT: PASS" "$log"; then
	echo "execve abort works on $(basename "$kernel") ($accel)"
	echo "test-kernels: 1 passed, 0 failed"
else
	echo "the VM test failed; console output is in $log" >&2
	echo "test-kernels: 0 passed, 1 failed"
	exit 1
fi
