"""The peers a sysadmin would pick, for bench.py: auditd as a tracer, and two syscall-heavy servers
on loopback (nginx serving a small static file to ab, redis-server answering redis-benchmark), each
with a fixed request count so every run does the same work.

Each server is our own instance (own config, port, pid file and logs under the bench directory),
pinned to SERVER_CPU with its load generator on CLIENT_CPU, started for a session and stopped
after it: no system service is started, enabled or left running."""

import os
import shutil
import signal
import socket
import subprocess
import time

from measure import kthreads, tree

SERVER_CPU = "1"
TRACER_CPU = "0"  # as bench.py: the tracer away from the CPU of what it traces
CLIENT_CPU = "0"
AUDIT_KEY = "ebpfh-bench"
# The login uid the workloads run under while audited (no real user has it).
AUDIT_AUID = "4242420"
AUDIT_RULE = ["-F", "arch=b64", "-S", "all", "-F", f"auid={AUDIT_AUID}", "-k", AUDIT_KEY]
# Debian's audit.rules sets this backlog; the kernel's default (64) would make audited
# processes wait for auditd almost at once.
AUDIT_BACKLOG = "8192"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, limit=30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {limit} s")


def audit_status():
    out = subprocess.run(["auditctl", "-s"], stdout=subprocess.PIPE, text=True, check=True).stdout
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


class AuditTax:
    """Keeps audit's per-call work off every workload but auditd's own. Once audit has been
    enabled in a boot (as auditd's session does), the kernel gives every new task an audit
    context, and each of its system calls then pays audit's entry and exit work even with audit
    disabled again and no rule at all: here audit_reset_context and its neighbours took 14% of a
    `getppid` loop's samples (about 45 ns of a call). So the sessions that ran before the first
    auditd session of a run measured a cheaper machine than those after it, in every
    configuration. A `-a task,never` rule makes new tasks skip audit; it is held for the whole
    run but during auditd's sessions, and removed at the end. Only when audit is not in use
    (disabled, no rules): a host that audits for real keeps its audit as it is, and pays it
    everywhere alike."""

    RULE = ["task,never"]
    LISTED = "-a never,task"  # how `auditctl -l` shows it

    def __init__(self):
        self.held = False

    def hold(self):
        """Adds the rule when audit is not in use; returns why not if it does not."""
        if not shutil.which("auditctl"):
            return None  # no audit tools: bench-deps installs them before anything is audited
        rules = subprocess.run(["auditctl", "-l"], stdout=subprocess.PIPE, text=True).stdout.strip()
        if audit_status().get("enabled", "0") != "0" or rules not in ("", "No rules", self.LISTED):
            return "audit is in use on this host: every workload pays its per-call work"
        # Already there: left by a run that was killed; this one removes it at its end.
        if rules != self.LISTED:
            subprocess.run(["auditctl", "-a", *self.RULE], check=True, stdout=subprocess.DEVNULL)
        self.held = True
        return None

    def release(self):
        if self.held:
            subprocess.run(["auditctl", "-d", *self.RULE], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.held = False


# The one rule of the run (bench.py holds it; an auditd session lets it go meanwhile).
AUDIT_TAX = AuditTax()


class Auditd:
    """auditd with one syscall rule, `-a always,exit -F arch=b64 -S all -F auid=AUDIT_AUID`: every
    call of the workload's processes (marked with that login uid before exec, which their
    children inherit) is a record in auditd's log (/etc/audit/auditd.conf: /var/log/audit/,
    rotated at 8 MiB x 5), and nothing else on the machine is logged. If no auditd runs, we start
    one (`auditd -n`) for the session and stop it after; the kernel's audit settings (enabled,
    backlog limit) are put back as they were and only our rule is removed."""

    name = "auditd"
    solo = False  # an audited call may wait for auditd to drain the backlog
    slow = True  # costs many times any disturbance: one run per workload, no retries

    @staticmethod
    def preexec():
        with open("/proc/self/loginuid", "w") as f:
            f.write(AUDIT_AUID)

    def start(self):
        if not shutil.which("auditctl") or not shutil.which("auditd"):
            raise RuntimeError("auditd is not installed: run `make bench-deps`")
        self.before = audit_status()
        self.ours = None
        self.tax_held = False
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        # The audited workload's tasks need their audit context.
        self.tax_held = AUDIT_TAX.held
        AUDIT_TAX.release()
        if self.before.get("pid", "0") == "0":
            self.ours = subprocess.Popen(["taskset", "-c", TRACER_CPU, "auditd", "-n"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            end = time.monotonic() + 30
            while audit_status().get("pid") != str(self.ours.pid):
                if self.ours.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("auditd did not start (try `auditd -f` to see why)")
                time.sleep(0.1)
        self.pid = int(audit_status()["pid"])
        subprocess.run(["auditctl", "-b", AUDIT_BACKLOG, "-e", "1"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["auditctl", "-a", "always,exit", *AUDIT_RULE], check=True, stdout=subprocess.DEVNULL)
        self.lost0 = int(audit_status().get("lost", 0))

    def pids(self):
        return [self.pid] + kthreads("kauditd")

    def progs(self):
        return []

    def wrap(self, argv):
        return argv

    def lost(self):
        return int(audit_status().get("lost", 0)) - self.lost0

    def stop(self):
        subprocess.run(["auditctl", "-d", "always,exit", *AUDIT_RULE], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        b = self.before
        subprocess.run(["auditctl", "-b", b.get("backlog_limit", "64"), "-e", b.get("enabled", "0")],
                       check=True, stdout=subprocess.DEVNULL)
        if self.tax_held:
            AUDIT_TAX.hold()
        if self.ours is not None and self.ours.poll() is None:
            self.ours.send_signal(signal.SIGTERM)
            try:
                self.ours.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.ours.kill()
                self.ours.wait(timeout=10)


class Server:
    """One server instance for a session: start(wrap) runs it (under strace when wrap says so),
    stop() ends it through its own pid file, so a tracer wrapped around it ends with it."""

    def __init__(self, out, requests):
        self.dir = os.path.join(out, self.name)
        self.requests = requests

    def start(self, wrap, preexec=None):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.pidfile = os.path.join(self.dir, "server.pid")
        self.prepare()
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(wrap(["taskset", "-c", SERVER_CPU, *self.argv()]),
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec)
        wait_port(self.port, self.proc)

    def pids(self):
        # Loopback traffic is partly processed in ksoftirqd, on the server's behalf.
        return tree(self.proc.pid) + kthreads("ksoftirqd/")

    def stop(self):
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().split()[0]), signal.SIGTERM)
        except (OSError, ValueError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for p in reversed(self.pids()):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx(Server):
    """Debian's nginx, one worker, serving a 1 KiB file with its access log on, to ab (Apache's
    benchmark, apache2-utils): a fixed request count (-n) over 4 keep-alive connections. ab because
    it is packaged, takes a request count rather than a duration, and is what a sysadmin reaches
    for; keep-alive so the run is nginx's request path (recv, open, fstat, sendfile, log write,
    close) rather than TCP setup."""

    name = "nginx"
    exe = "/usr/sbin/nginx"
    unit = "us/req"

    def prepare(self):
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write(("<p>ebpfh bench</p>\n" * 60)[:1024])
        for d in (self.dir, www):
            os.chmod(d, 0o755)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {self.pidfile};
error_log {self.dir}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {self.dir}/access.log;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port};
    root {www};
  }}
}}
""")

    def argv(self):
        return [self.exe, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")]

    def client(self):
        return ["taskset", "-c", CLIENT_CPU, "ab", "-q", "-k", "-c", "4", "-n", str(self.requests),
                f"http://127.0.0.1:{self.port}/index.html"]

    def check(self, out):
        for line in out.splitlines():
            if line.startswith("Failed requests:") and line.split()[-1] != "0":
                raise RuntimeError(f"ab: {line.strip()}")
            if line.startswith("Non-2xx responses:"):
                raise RuntimeError(f"ab: {line.strip()}")


class Redis(Server):
    """Debian's redis-server with persistence off, under redis-benchmark's SET and GET with a fixed
    request count (-n) over 4 connections, no pipelining: one read and one write per request."""

    name = "redis"
    exe = "/usr/bin/redis-server"
    unit = "us/req"

    def prepare(self):
        pass

    def argv(self):
        return [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--pidfile", self.pidfile,
                "--dir", self.dir, "--logfile", ""]

    def client(self):
        # -n is per test: SET and GET make 2 x requests/2.
        return ["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port),
                "-c", "4", "-n", str(self.requests // 2), "-t", "set,get", "-q"]

    def check(self, out):
        if out.count("requests per second") != 2:
            raise RuntimeError(f"redis-benchmark: unexpected output {out[-200:]!r}")
