#!/bin/sh
# Runs in each kernel of the matrix (PID 1, started by tests/vm/boot): the root integration
# tests tests/vm/run.sh listed in target/vm/tests.list, one binary at a time with one test thread,
# then execve abort end to end. Prints `EBPFH-VM-TEST: NAME ok|FAILED` per test and one
# `EBPFH-VM-RESULT: N passed, M failed` line for tests/vm/run.sh to count.
k=$(uname -r)
echo "EBPFH-VM: kernel $k, LSMs: $(cat /sys/kernel/security/lsm)"
ebpfh=$(cat target/vm/ebpfh.path)
# The monitor refuses state and run directories that others can write, up to / (sticky /tmp
# included); in the guest everything runs as root, so the tests' temporary directories under
# this VM's own /tmp may be root-only.
chmod 0755 /tmp
passed=0
failed=0
done_() {
	echo "EBPFH-VM-RESULT: $passed passed, $failed failed"
	exit 0
}

# First: does the program load and attach at all? If not, every test would wait for a monitor
# that never starts; say so once instead.
mkdir -p /tmp/load
"$ebpfh" --headless --state-dir /tmp/load/state --run-dir /tmp/load/run --log /tmp/load/ev.jsonl \
	2>/tmp/load/err &
pid=$!
for i in $(seq 300); do grep -q monitor_started /tmp/load/ev.jsonl 2>/dev/null && break; sleep 0.2; done
kill -TERM $pid 2>/dev/null
wait $pid
if ! grep -q monitor_started /tmp/load/ev.jsonl 2>/dev/null; then
	echo "EBPFH-VM: ebpfh does not load on $k:"
	sed 's/^/EBPFH-VM:   /' /tmp/load/err
	echo "EBPFH-VM-TEST: load FAILED"
	failed=1
	done_
fi
echo "EBPFH-VM-TEST: load ok"
passed=1

while read -r name path; do
	echo "EBPFH-VM: running tests/$name.rs"
	"$path" --test-threads=1 2>&1 | tee "/tmp/$name.out"
	# The names of failed tests: the list after libtest's second "failures:" heading.
	awk -v n="$name" '/^failures:$/ { f++ } f == 2 && /^    / { print "EBPFH-VM-TEST: " n "::" $1 " FAILED" }' \
		"/tmp/$name.out"
	result=$(grep '^test result:' "/tmp/$name.out" | tail -1)
	if [ -z "$result" ]; then
		echo "EBPFH-VM-TEST: $name (the test binary did not finish) FAILED"
		failed=$((failed + 1))
		continue
	fi
	p=$(echo "$result" | sed 's/.* \([0-9]*\) passed.*/\1/')
	f=$(echo "$result" | sed 's/.* \([0-9]*\) failed.*/\1/')
	passed=$((passed + p))
	failed=$((failed + f))
done <target/vm/tests.list

# The guest boots with lsm=...,bpf: a kernel that still has the BPF LSM off cannot run the
# check, and that is reported, not skipped.
if ! grep -qw bpf /sys/kernel/security/lsm; then
	echo "EBPFH-VM: the BPF LSM is off on $k although lsm= asked for it"
	echo "EBPFH-VM-TEST: execve-abort FAILED"
	failed=$((failed + 1))
elif sh tests/vm/execve-abort.sh "$ebpfh"; then
	echo "EBPFH-VM-TEST: execve-abort ok"
	passed=$((passed + 1))
else
	echo "EBPFH-VM-TEST: execve-abort FAILED"
	failed=$((failed + 1))
fi
done_
