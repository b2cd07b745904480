"""Every fork, exec and exit on the machine, from the kernel's process-events connector.

The harness needs to know exactly which processes each workload run and attack started, including
daemons that double-fork and children of children. The proc connector (NETLINK_CONNECTOR,
CN_IDX_PROC) reports each fork with its parent, stamped with the kernel's monotonic clock, so the
process tree is rebuilt after the fact (see score.Tree). Lost messages are detected through the
per-CPU sequence numbers the kernel puts on every message, and reported: an attribution built
on a lossy stream is said to be so, never passed off as exact.
"""

import os
import socket
import struct
import threading
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33

NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
PROC_EV = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
FORK = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
PIDS = struct.Struct("=ii")  # process_pid, process_tgid (exec, exit)


class ProcWatch:
    """Collects ("fork", ts, parent_tgid, child_pid, child_tgid), ("exec", ts, pid, tgid) and
    ("exit", ts, pid, tgid) tuples in a background thread until stop()."""

    def __init__(self):
        self.events = []
        self.lost = 0
        self._last_seq = {}
        self._stop = False
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind((os.getpid(), CN_IDX_PROC))
        self.sock.settimeout(0.2)
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        self.sock.send(NLMSG.pack(NLMSG.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError as e:  # ENOBUFS: the kernel dropped messages; seq gaps count them
                if e.errno == 105:
                    self.lost += 1
                    continue
                raise
            self._parse(data)

    def _parse(self, data):
        off = 0
        while off + NLMSG.size <= len(data):
            length = NLMSG.unpack_from(data, off)[0]
            if length < NLMSG.size:
                break
            body = off + NLMSG.size
            _, _, seq, _, _, _ = CN_MSG.unpack_from(data, body)
            ev = body + CN_MSG.size
            what, cpu, ts = PROC_EV.unpack_from(data, ev)
            last = self._last_seq.get(cpu)
            if last is not None and seq > last + 1:
                self.lost += seq - last - 1
            self._last_seq[cpu] = seq
            d = ev + PROC_EV.size
            if what == PROC_EVENT_FORK:
                _, ptgid, cpid, ctgid = FORK.unpack_from(data, d)
                self.events.append(("fork", ts, ptgid, cpid, ctgid))
            elif what == PROC_EVENT_EXEC:
                pid, tgid = PIDS.unpack_from(data, d)
                self.events.append(("exec", ts, pid, tgid))
            elif what == PROC_EVENT_EXIT:
                pid, tgid = PIDS.unpack_from(data, d)
                self.events.append(("exit", ts, pid, tgid))
            off += (length + 3) & ~3

    def stop(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def tai_minus_mono_ns():
    """CLOCK_TAI - CLOCK_MONOTONIC: constant unless someone steps the clock. Read between two
    monotonic readings, so the error is the length of one clock_gettime call."""
    a = mono_ns()
    t = time.clock_gettime_ns(time.CLOCK_TAI)
    b = mono_ns()
    return t - (a + b) // 2


def tai_minus_utc_ns():
    """What ebpfh subtracts from its CLOCK_TAI stamps to print UTC (rounded to whole seconds,
    as src/clock.rs does)."""
    tai = time.clock_gettime_ns(time.CLOCK_TAI)
    utc = time.clock_gettime_ns(time.CLOCK_REALTIME)
    return round((tai - utc) / 1e9) * 1_000_000_000
