#!/usr/bin/env bash
# The kernel matrix: boots each of Debian's kernels (6.1 from bookworm, 6.12 from
# bookworm-backports) in QEMU on a Debian root filesystem (tests/vm/rootfs.sh) and runs there
# the root integration tests built on this host (tests/vm/matrix.sh), then the shipped systemd
# unit under a real systemd (tests/vm/systemd.sh). The host kernel is the matrix's third column:
# `make test`. Prints `KERNEL: N passed, M failed` per boot and a closing
# `test-kernels: N passed, M failed`; exits 1 when anything failed.
# Usage: tests/vm/run.sh   (root; `make test-kernels` builds what it needs first)
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
work=target/vm
# The tests that load, attach, train, detect and answer commands on a real kernel. Not top.rs
# (it drives `ebpfh top` in tmux; the dashboard does not depend on the kernel version), nor the
# tests that need no kernel (cli, replay).
VM_TESTS=${VM_TESTS:-kernel commands control respond agreement}
# Under TCG a kernel's boot takes a few minutes on a quiet 2-core host and up to 12 on a busy
# one; a VM that runs for 25 minutes is hung.
VM_TIMEOUT=${VM_TIMEOUT:-1500}
mkdir -p "$work"

began=$SECONDS
bash tests/vm/rootfs.sh || { echo "test-kernels: 0 passed, 1 failed (no root filesystem)"; exit 1; }
echo "(the guest root filesystem took $((SECONDS - began)) s)"

# Build the test binaries once here; the guest runs them from the read-only 9p share of this
# repository, at the same path (their CARGO_BIN_EXE_ebpfh and CARGO_MANIFEST_DIR are absolute).
began=$SECONDS
args=()
for t in $VM_TESTS; do args+=(--test "$t"); done
# Release builds: the guest emulates its CPU, and unoptimized monitors and test harnesses
# (which parse the event log at every poll) made each kernel's run several times longer.
if ! cargo test --release --no-run --message-format=json "${args[@]}" >"$work/build.json" 2>"$work/build.err"; then
	cat "$work/build.err" >&2
	echo "test-kernels: 0 passed, 1 failed (the tests do not build)"
	exit 1
fi
: >"$work/tests.list"
for t in $VM_TESTS; do
	exe=$(grep "\"name\":\"$t\",\"src_path\"" "$work/build.json" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
	echo "$t $exe" >>"$work/tests.list"
done
grep -o '"executable":"[^"]*/target/release/ebpfh"' "$work/build.json" | cut -d'"' -f4 | head -1 \
	>"$work/ebpfh.path"
[ -s "$work/ebpfh.path" ] || echo "$repo/target/release/ebpfh" >"$work/ebpfh.path"
echo "(building the tests took $((SECONDS - began)) s)"

# TCG unless KVM really works: nested KVM hangs on some hosts, so a short probe boot decides.
# TCG runs both guest CPUs in one host thread (thread=single). With a thread per guest CPU, a
# CPU can go on running code another CPU has just patched: enabling and disabling a tracepoint
# (which rewrites its call sites through int3) in a guest while the other CPU makes system calls
# crashed 6.12 ("Oops: int3") within a few hundred toggles and stalled 6.1 (RCU, then no
# progress) within a few dozen, with nothing of ebpfh loaded; one thread ran each for five
# minutes without either. Starting and stopping the monitor does the same patching. One host
# core per VM also lets two VMs run at once.
accel=tcg,thread=single
if [ -w /dev/kvm ] && [ -z "${VM_TCG:-}" ]; then
	k=$(ls "$work"/vmlinuz-* | head -1)
	if timeout 15 qemu-system-x86_64 -accel kvm -m 256 -nographic -no-reboot -kernel "$k" \
		-append "console=ttyS0 panic=-1 quiet" >"$work/kvm-probe.log" 2>&1 ||
		grep -q "Kernel panic" "$work/kvm-probe.log"; then
		accel=kvm
	fi
fi

# start NAME KERNEL SCRIPT EXTRA_APPEND: boots one VM in the background; its console goes to
# target/vm/console-NAME.log and its exit status to target/vm/NAME.rc.
start() {
	local name=$1 kernel=$2 script=$3 extra=$4
	local version=${kernel##*/vmlinuz-}
	rm -f "$work/$name.rc"
	# no_timer_check: on a busy host the emulated timer can miss the kernel's boot-time check,
	# which then panics ("IO-APIC + timer doesn't work").
	(
		timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel $accel -cpu max -m 2048 -smp 2 \
			-nographic -no-reboot -snapshot -nic none \
			-kernel "$kernel" -initrd "$work/initrd.img-$version" \
			-drive file="$work/rootfs.ext4",format=raw,if=virtio \
			-virtfs local,path="$repo",mount_tag=repo,security_model=none,readonly=on \
			-append "console=ttyS0 root=/dev/vda rw quiet panic=-1 no_timer_check lsm=lockdown,capability,yama,apparmor,bpf EBPFH_REPO=$repo EBPFH_RUN=$script $extra" \
			>"$work/console-$name.log" 2>&1
		echo $? >"$work/$name.rc"
	) &
}

total_p=0
total_f=0
# report NAME: prints what went wrong in that VM and its count line; adds to the totals.
report() {
	local name=$1 log=$work/console-$1.log rc result p f
	rc=$(cat "$work/$name.rc" 2>/dev/null || echo "?")
	tr -d '\r' <"$log" | grep -a -E "^EBPFH-VM" | grep -v -E "^EBPFH-VM(-TEST: .* ok|-RESULT:.*|: running .*)$"
	result=$(tr -d '\r' <"$log" | grep -a "^EBPFH-VM-RESULT:" | tail -1)
	if [ -z "$result" ]; then
		if [ "$rc" = 124 ]; then
			echo "$name: the VM did not finish within ${VM_TIMEOUT}s; its console is in $log"
		else
			echo "$name: the VM stopped (status $rc) before reporting; its console is in $log"
		fi
		# What it reported before it stopped still counts; the stop itself is one failure.
		p=$(tr -d '\r' <"$log" | grep -a -c "^EBPFH-VM-TEST: .* ok$")
		f=$(($(tr -d '\r' <"$log" | grep -a -c "^EBPFH-VM-TEST: .* FAILED$") + 1))
	else
		p=$(echo "$result" | sed 's/.* \([0-9]*\) passed.*/\1/')
		f=$(echo "$result" | sed 's/.* \([0-9]*\) failed.*/\1/')
		[ "$f" = 0 ] || echo "$name: see its console in $log"
	fi
	echo "$name: $p passed, $f failed"
	total_p=$((total_p + p))
	total_f=$((total_f + f))
}

# The systemd test installs what `make install` puts in place (DESTDIR: nothing on this host).
systemd=
if [ -f tests/vm/systemd.sh ] && [ -z "${VM_NO_SYSTEMD:-}" ]; then
	rm -rf "$work/install"
	if make --no-print-directory install DESTDIR="$repo/$work/install" >"$work/install.log" 2>&1; then
		systemd=yes
	else
		cat "$work/install.log"
		echo "systemd: make install failed"
		total_f=$((total_f + 1))
	fi
fi

# VM_JOBS VMs run side by side; by default one per host core under TCG (each runs in one host
# thread), one per two under KVM (each guest CPU is a host thread there).
cores=$(nproc)
if [ "$accel" = kvm ]; then
	VM_JOBS=${VM_JOBS:-$((cores >= 6 ? 3 : cores >= 4 ? 2 : 1))}
else
	VM_JOBS=${VM_JOBS:-$((cores >= 3 ? 3 : cores))}
fi
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$VM_JOBS" ]; do wait -n; done; }
began=$SECONDS
names=()
for kernel in "$work"/vmlinuz-*; do
	name=${kernel##*/vmlinuz-}
	case " ${VM_KERNELS:-$name} " in *" $name "*) ;; *) continue ;; esac
	throttle
	start "$name" "$kernel" tests/vm/matrix.sh "init=/usr/local/sbin/boot"
	names+=("$name")
done
if [ -n "$systemd" ]; then
	throttle
	# The newest kernel: what a current Debian system would run.
	start systemd "$(ls "$work"/vmlinuz-* | sort -V | tail -1)" tests/vm/systemd.sh \
		"systemd.run=/usr/local/sbin/boot systemd.run_success_action=poweroff-force systemd.run_failure_action=poweroff-force"
	names+=(systemd)
fi
wait
# A run that booted nothing must not pass: say which kernels there were.
if [ ${#names[@]} = 0 ]; then
	echo "test-kernels: no VM was booted (kernels in $work: $(ls "$work" | grep vmlinuz- | tr '\n' ' ')VM_KERNELS=${VM_KERNELS:-})"
	total_f=$((total_f + 1))
fi
for name in "${names[@]}"; do report "$name"; done
echo "(the VMs ran for $((SECONDS - began)) s with $accel, $VM_JOBS at a time)"
echo "test-kernels: $total_p passed, $total_f failed"
[ "$total_f" = 0 ]
