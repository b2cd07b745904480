#!/bin/sh
# The shipped unit under a real systemd (Debian bookworm's), run by systemd as the
# kernel-command-line service tests/vm/run.sh asks for (systemd.run=/usr/local/sbin/boot).
# Installs what `make install DESTDIR=target/vm/install` put there, then: start, status, a
# client command, stop (the ExecStopPost resume hook), Restart=on-failure after SIGKILL with a
# delayed process that the hook must free, logrotate's snippet. Prints
# `EBPFH-VM-TEST: systemd::NAME ok|FAILED` per check and one `EBPFH-VM-RESULT:` line.
exec >/dev/console 2>&1
passed=0
failed=0
ok() {
	echo "EBPFH-VM-TEST: systemd::$1 ok"
	passed=$((passed + 1))
}
bad() {
	echo "EBPFH-VM-TEST: systemd::$1 FAILED"
	shift
	for l in "$@"; do echo "EBPFH-VM:   $l"; done
	failed=$((failed + 1))
}
# until_ SECONDS COMMAND...: polls COMMAND until it succeeds or SECONDS have passed.
until_() {
	end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt $end ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}
log=/var/log/ebpfh/events.jsonl
main_pid() { systemctl show -p MainPID --value ebpfh; }
started_since() { [ "$(grep -c monitor_started $log 2>/dev/null)" -gt "$1" ]; }
journal() { journalctl -q -u ebpfh --no-pager -o cat; }
echo "EBPFH-VM: kernel $(uname -r), systemd $(systemctl --version | head -1)"

cp -a target/vm/install/. /
systemctl daemon-reload

# 1. The unit as shipped.
systemctl start ebpfh
if until_ 300 started_since 0 && [ "$(systemctl is-active ebpfh)" = active ]; then
	ok start
else
	bad start "$(systemctl status ebpfh --no-pager 2>&1)" "$(journal | tail -20)"
fi
systemctl status ebpfh --no-pager | sed -n '1,4p'
if out=$(ebpfh status 2>&1); then ok client-status; else bad client-status "$out"; fi
echo "$out" | head -5
mkdir -p /usr/local/lib/ebpfh-vm
cc -O2 -o /usr/local/lib/ebpfh-vm/burst tests/fixtures/burst.c
# A process of another user, started by a relative name: the monitor names its profile from
# /proc/PID/exe, which the unit's capabilities must let it read. It sleeps, so that it still
# runs when the monitor looks.
cp /bin/sleep /usr/local/lib/ebpfh-vm/sleeper
(cd /usr/local/lib/ebpfh-vm && exec setpriv --reuid=65534 --regid=65534 --clear-groups ./sleeper 20) &
sleeper=$!
if until_ 20 grep -q '"exe":"/usr/local/lib/ebpfh-vm/sleeper"' $log; then
	ok other-users-exe
else
	bad other-users-exe "$(grep profile_created $log | grep sleeper)"
fi
kill $sleeper
wait $sleeper

# 2. Stop: the monitor saves and detaches, then the ExecStopPost hook runs `resume --all`.
systemctl stop ebpfh
if [ "$(systemctl is-active ebpfh)" = inactive ] && grep -q monitor_stopped $log &&
	journal | grep -q "resumed 0 stopped processes"; then
	ok stop-runs-the-resume-hook
else
	bad stop-runs-the-resume-hook "$(systemctl is-active ebpfh)" "$(journal | tail -10)"
fi

# 3. Restart=on-failure after SIGKILL, while the delay response holds a process stopped: the
# ExecStopPost hook frees it. Only the flags change (a drop-in); the
# hardening, capabilities and hooks stay the shipped ones.
x=/usr/local/lib/ebpfh-vm/burst
mkdir -p /etc/systemd/system/ebpfh.service.d
cat >/etc/systemd/system/ebpfh.service.d/vm.conf <<EOC
[Service]
ExecStart=
ExecStart=/usr/local/sbin/ebpfh --headless --log $log --state-dir /var/lib/ebpfh --run-dir /run/ebpfh --normal-wait 1s --respond-only $x --delay-factor 60000 --max-delay 1h
EOC
systemctl daemon-reload
n=$(grep -c monitor_started $log)
systemctl start ebpfh
until_ 300 started_since "$n" || bad restart "the monitor with responses did not start" "$(journal | tail -10)"
for i in $(seq 20); do $x >/dev/null; done
sleep 1.5
until_ 60 sh -c "$x >/dev/null; grep -q normal_started $log"
$x 4 >/dev/null &
victim=$!
until_ 30 sh -c "grep '\"event\":\"delay\"' $log | grep -q '\"pid\":$victim,'"
state() { awk '{print $3}' /proc/$victim/stat 2>/dev/null; }
before=$(state)
old=$(main_pid)
n=$(grep -c monitor_started $log)
systemctl kill -s KILL ebpfh
# `resume --all` prints that line; the monitor itself never does.
if [ "$before" = T ] && until_ 60 sh -c "[ \"\$(awk '{print \$3}' /proc/$victim/stat)\" != T ]" &&
	until_ 30 sh -c "journalctl -q -u ebpfh -o cat | grep -q 'resumed 1 stopped processes'"; then
	ok sigkill-runs-the-resume-hook
else
	bad sigkill-runs-the-resume-hook "state before $before, after $(state)" "$(journal | tail -10)"
fi
# The restarted monitor would delay it again (its next write is anomalous too).
kill -KILL $victim 2>/dev/null
wait $victim
if until_ 120 started_since "$n" && [ "$(systemctl is-active ebpfh)" = active ] &&
	[ "$(main_pid)" != "$old" ] && [ "$(systemctl show -p NRestarts --value ebpfh)" = 1 ]; then
	ok restart-on-failure
else
	bad restart-on-failure "$(systemctl status ebpfh --no-pager 2>&1 | head -5)" "$(journal | tail -10)"
fi

# 4. logrotate's snippet: the old log moves aside and, after the SIGHUP, the monitor writes
# to the new file.
logrotate -f /etc/logrotate.d/ebpfh
cp $x $x-after-rotation
$x-after-rotation >/dev/null
if [ -s $log.1 ] && until_ 10 grep -q after-rotation $log && ! grep -q after-rotation $log.1; then
	ok logrotate
else
	bad logrotate "$(ls -l /var/log/ebpfh)"
fi
ls -l /var/log/ebpfh
systemctl stop ebpfh
rm -r /etc/systemd/system/ebpfh.service.d
echo "EBPFH-VM-RESULT: $passed passed, $failed failed"
