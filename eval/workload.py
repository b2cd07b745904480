"""A generated sysadmin's "day": one bash session plus its input files, different for every seed.

Every day does the same kinds of chores (log pipelines, backups, find, Python reports and a local
web server, git, make, Perl one-liners, shell functions and traps, `bash -c` one-liners), but what
it works on — sizes, names, patterns, counts, which chores and in what order — is drawn from the
day's seed. Training and test days use disjoint seeds, so test days bring new inputs the profiles
have not seen. The day is typed into a shell (`bash -s`, the script on its standard input), as an
admin's session is, so it runs under bash's own profile; the admin's Python tools live at fixed
paths (`install_tools`), as they would on a host, so each keeps one script profile across days.
Nothing here knows about the attacks.
"""

import os
import random
import shlex
import urllib.parse

WORDS = (
    "alpha bravo cedar delta ember falcon garnet harbor indigo juniper kestrel lumen maple "
    "nectar onyx pepper quartz raven sable timber umber violet willow xenon yarrow zephyr "
    "backup deploy config report metrics cache queue worker index audit session token"
).split()
PATHS = ["/", "/index.html", "/api/v1/items", "/api/v1/users", "/login", "/static/app.js",
         "/static/style.css", "/health", "/metrics", "/admin", "/search", "/favicon.ico"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD"]
STATUS = [200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 500, 502, 503]

# Written once per day directory; the day script runs them with the arguments it draws.
GEN_LOG_PY = r'''
import random, sys, time
seed, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
paths, methods, status = sys.argv[4].split(","), sys.argv[5].split(","), sys.argv[6].split(",")
r = random.Random(seed)
t = 1700000000 + r.randrange(10**6)
with open(out, "w") as f:
    for i in range(n):
        t += r.randrange(3)
        ip = "10.%d.%d.%d" % (r.randrange(4), r.randrange(256), r.randrange(1, 255))
        f.write('%s - - [%s] "%s %s HTTP/1.1" %s %d "-" "agent/%d"\n' % (
            ip, time.strftime("%d/%b/%Y:%H:%M:%S", time.gmtime(t)), r.choice(methods),
            r.choice(paths), r.choice(status), r.randrange(50, 90000), r.randrange(9)))
'''

REPORT_PY = r'''
import csv, json, statistics, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
by = collections.defaultdict(list)
for r in rows:
    by[r["host"]].append(float(r["value"]))
out = {h: {"n": len(v), "mean": round(statistics.mean(v), 2), "max": max(v)} for h, v in by.items()}
json.dump(out, open(sys.argv[2], "w"), indent=1, sort_keys=True)
print(len(rows), "rows,", len(out), "hosts")
'''

# A small internal service that the admin runs every day: it evaluates arithmetic for a
# dashboard (with eval, which is the bug an attack can use) and reports its uptime.
SERVICE_PY = r'''
import http.server, sys, time, urllib.parse
START = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/calc":
            body = str(eval(q.get("expr", ["0"])[0])).encode()
        elif u.path == "/uptime":
            body = ("%.1f" % (time.time() - START)).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

SERVE_SH = r'''
# Starts a server in the background and waits until it answers (at most ~5 s).
wait_port() {
    local i
    for i in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/${2:-}" && return 0
        sleep 0.05
    done
    return 1
}
'''


def words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


TOOLS = (("genlog.py", GEN_LOG_PY), ("report.py", REPORT_PY), ("service.py", SERVICE_PY))


def install_tools(tools_dir):
    """The admin's scripts, written once where every day (and the service attack) finds them."""
    os.makedirs(tools_dir, exist_ok=True)
    for name, text in TOOLS:
        with open(os.path.join(tools_dir, name), "w") as f:
            f.write(text)


def day(seed, kind, index, bin_dir, tools, root, ports):
    """Writes day `index` of `kind` ("train" or "test") under `root` and returns the path of its
    script, which the harness feeds to `bash -s`. `tools` is where `install_tools` put the
    scripts; `ports` gives two free 127.0.0.1 ports (a file server and the service). A day is a
    few rounds of chores, each round in its own directory with its own inputs, and each with
    /dev/null as its input (the session's input is the rest of the script)."""
    r = random.Random(f"{seed}:{kind}:{index}")
    d = os.path.join(root, f"{kind}-{index:03d}")
    os.makedirs(os.path.join(d, "home"), exist_ok=True)
    script = os.path.join(d, "day.sh")
    with open(script, "w") as f:
        f.write(f"# {kind} day {index} (seed {seed})\nset -u\n{SERVE_SH}")
        for k in range(r.randrange(2, 5)):
            rd = os.path.join(d, f"round-{k}")
            os.makedirs(rd)
            f.write(f"\n( cd {shlex.quote(rd)}\n{chores(r, rd, bin_dir, tools, ports)}\n) </dev/null\n")
    return script


def chores(r, d, bin_dir, tools, ports):
    """One round of chores in directory `d`: shell functions, then the calls in a drawn order."""
    q = shlex.quote
    genlog, report, service = (q(os.path.join(tools, n)) for n, _ in TOOLS)
    web_port, svc_port = ports
    pat = r.choice(WORDS)
    nlines = r.randrange(300, 4000)
    out = []

    out.append(f"""
logs() {{
    python3 {genlog} {r.randrange(10**9)} {nlines} access.log {",".join(r.sample(PATHS, r.randrange(4, len(PATHS))))} {",".join(r.sample(METHODS, r.randrange(2, len(METHODS))))} {",".join(map(str, r.sample(STATUS, r.randrange(3, len(STATUS)))))}
    grep -c ' {r.choice(STATUS)} ' access.log || true
    grep -E '{"|".join(r.sample(PATHS, r.randrange(1, 4)))}' access.log | cut -d' ' -f1,7 | sort | head -n {r.randrange(3, 20)} > top-paths.txt
    awk '{{n[${r.choice([1, 7, 9])}]++}} END {{for (k in n) print n[k], k}}' access.log | sort -rn | head -n {r.randrange(3, 12)}
    sed -n 's/.*"\([A-Z]*\) \([^ ]*\).*/\1 \2/p' access.log | sort | sort -u | wc -l
    tail -n {r.randrange(5, 200)} access.log | cut -c1-{r.randrange(20, 80)} > tail.txt
    head -n {r.randrange(5, 200)} access.log | {r.choice(["mawk '{print $1}'", "cut -d' ' -f9", "sed 's/ - - / /'"])} | sort | head -n 3
    less -F tail.txt > /dev/null
    cat access.log top-paths.txt | wc -c
}}""")

    nfiles = r.randrange(5, 40)
    backup_oneliner = r.choice([
        """ls data | xargs -I{} bash -c 'test -d "data/$1" && echo "$1"' _ {}""",
        """bash -c 'n=0; for f in data/*/*; do n=$((n + 1)); done; echo "$n files"'""",
        """find data -type d | xargs -n 1 bash -c 'echo "${1##*/}"' _ | sort | head -n 3"""])
    out.append(f"""
backup() {{
    mkdir -p data/{q(r.choice(WORDS))}/{q(r.choice(WORDS))} restore
    for i in $(seq 1 {nfiles}); do
        sub=data/$(ls data | head -n 1)
        echo "{words(r, r.randrange(3, 30))} $i" > "$sub/file-$i.txt"
        {r.choice(["head -c $((RANDOM % 4000)) access.log", "date", "env | sort | head -n 5"])} >> "$sub/file-$i.txt" 2>/dev/null || true
    done
    cp access.log data/
    {backup_oneliner}
    tar -c{r.choice(["", "v"])}f backup.tar data > /dev/null
    gzip -{r.randrange(1, 10)} -k backup.tar
    tar -tzf backup.tar.gz | wc -l
    tar -xzf backup.tar.gz -C restore
    {r.choice(["tar -czf backup2.tgz data", "tar -cf - data | gzip -c > backup2.tgz"])}
    gzip -dc backup2.tgz | tar -t{r.choice(["", "v"])}f - | tail -n 2
    du -s{r.choice(["", "h"])} data restore
    stat -c '%s %n' backup.tar.gz backup2.tgz
    mv backup.tar.gz backup-$(date +%Y%m%d).tar.gz
    rm -f backup.tar backup2.tgz
}}""")

    find_oneliner = r.choice([
        """find data -name '*.txt' -exec bash -c 'wc -l < "$1"' _ {} ';' | sort -n | tail -n 1""",
        """find . -maxdepth 1 -type f -print0 | xargs -0 -n 2 bash -c 'stat -c %s "$@"' _ | sort -n | tail -n 1""",
        """bash -c 'shopt -s nullglob; for f in *.log; do echo "${f%.log}"; done'"""])
    out.append(f"""
findings() {{
    mkdir -p data
    find . -name '*.{r.choice(["txt", "log", "py", "gz"])}' -type f | sort | head -n {r.randrange(3, 30)}
    find data -type f {r.choice(["-size +1k", "-size -2k", "-newer access.log", "-mmin -60"])} -print | wc -l
    find data -type f -print0 | xargs -0 grep -l{r.choice(["", "i"])} {q(pat)} | head -n 5 || true
    find . -maxdepth {r.randrange(1, 4)} -type d | sort
    {find_oneliner}
    {r.choice(["find data -type f -exec stat -c '%s' {} + | sort -n | tail -n 1",
               "find data -name '*.txt' -exec grep -c " + q(pat) + " {} + | head -n 3",
               "find data -type f | xargs -n 4 du -s | sort -n | tail -n 2"])}
}}""")

    nreq = r.randrange(2, 9)
    files = ["access.log", "tail.txt", "report.py", "genlog.py", "missing.txt"]
    out.append(f"""
python_work() {{
    for h in $(seq 1 {r.randrange(2, 9)}); do
        for j in $(seq 1 {r.randrange(5, 60)}); do echo "host$h,$((RANDOM % 1000)).$((RANDOM % 100))"; done
    done | {{ echo host,value; cat; }} > metrics.csv
    python3 {report} metrics.csv report.json
    python3 -c 'import json,sys; d=json.load(open("report.json")); print(sorted(d)[:3])'
    python3 -m http.server {web_port} --bind 127.0.0.1 > /dev/null 2>&1 &
    local web=$!
    wait_port {web_port} && for f in {" ".join(r.choice(files) for _ in range(nreq))}; do
        curl -s{r.choice(["", "f"])} -o /dev/null -w '%{{http_code}}\n' http://127.0.0.1:{web_port}/$f || true
    done
    curl -sI http://127.0.0.1:{web_port}/ | head -n 1
    kill $web; wait $web 2>/dev/null || true
}}""")

    calcs = [urllib.parse.quote(f"{r.randrange(100)}{r.choice('+-*')}{r.randrange(1, 100)}")
             for _ in range(r.randrange(2, 8))]
    out.append(f"""
service() {{
    python3 {service} {svc_port} &
    local svc=$!
    wait_port {svc_port} uptime && for e in {" ".join(calcs)}; do
        curl -s "http://127.0.0.1:{svc_port}/calc?expr=$e"; echo
    done
    curl -s http://127.0.0.1:{svc_port}/uptime > /dev/null
    kill $svc; wait $svc 2>/dev/null || true
}}""")

    ncommits = r.randrange(1, 8)
    branch = r.choice(["git checkout -q -b topic-" + str(r.randrange(100)) + " && git checkout -q -",
                       "git tag v" + str(r.randrange(1, 9)), "git show --stat HEAD | tail -n 2"])
    out.append(f"""
gitwork() {{
    mkdir -p repo && cd repo
    git init -q . 2>/dev/null
    git config user.email admin@example.org; git config user.name admin
    for i in $(seq 1 {ncommits}); do
        echo "{words(r, r.randrange(2, 12))} $i" >> {q(r.choice(WORDS))}.md
        git add -A && git commit -q -m "change $i: {words(r, 3)}"
    done
    git log --oneline | head -n {r.randrange(1, 6)}
    {r.choice(["git status --short", "git diff HEAD~0 --stat", "git branch -a"])}
    {branch}
    cd ..
}}""")

    ntargets = r.randrange(2, 7)
    recipes = ["sed s/GET/get/ access.log", "grep -c HTTP access.log", "head -n 20 access.log",
               "cut -d' ' -f1 access.log", "sort -k9 access.log | tail -n 5"]
    rules = "".join(f"out/t{i}.txt: access.log\n\t@mkdir -p out\n\t@{r.choice(recipes)} > $@\n"
                    for i in range(ntargets))
    makefile = (f"SHELL := {bin_dir}/dash\nall: {' '.join(f'out/t{i}.txt' for i in range(ntargets))}\n"
                f"\t@cat $^ | wc -l\n{rules}clean:\n\trm -rf out\n")
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(makefile)
    out.append(f"""
makework() {{
    make -s {r.choice(["", "-j2"])}
    make -s
    {r.choice(["make -s clean", "touch access.log && make -s", "true"])}
}}""")

    perl_pat = r.choice(["GET", "HTTP", "10\\.", "agent/[0-9]"])
    out.append(f"""
perlwork() {{
    perl -ne 'print if /{pat}|{r.choice(STATUS)}/' access.log | head -n {r.randrange(2, 10)}
    perl -lane '$s += $F[{r.choice([9, 10])}] // 0; END {{ print $s }}' access.log
    perl -pe 's{{{perl_pat}}}{{X}}g' tail.txt > tail.perl.txt
    perl -e 'my %h; while (<>) {{ $h{{(split)[0]}}++ }} print scalar(keys %h), "\n"' access.log
}}""")

    nsig = r.randrange(1, 4)
    shell_oneliners = (
        f"""bash -c 'set -o pipefail; printf "%s\\n" {words(r, r.randrange(2, 6))} | sort -u | wc -l'\n    """
        + r.choice([
            "bash -s <<'EOS'\ndeclare -A seen\nfor w in " + words(r, 4)
            + "; do seen[$w]=1; done\necho ${#seen[@]}\nEOS",
            """bash -c 'read -r a b < /proc/loadavg; echo "load $a"'""",
            """bash -c 'trap "echo bye" EXIT; echo """ + r.choice(WORDS) + "'"]))
    out.append(f"""
shellwork() {{
    local -a items=({words(r, r.randrange(2, 10))})
    tidy() {{ rm -f "$tmpf"; }}
    tmpf=$(mktemp ./tmp.XXXXXX)
    trap tidy RETURN
    trap 'hups=$((hups + 1))' USR1
    hups=0
    for i in $(seq 1 {nsig}); do kill -USR1 $BASHPID; done
    echo "signals: $hups"
    for it in "${{items[@]}}"; do printf '%s\n' "$it"; done | sort > "$tmpf"
    local n=0
    while read -r line; do n=$((n + ${{#line}})); done < "$tmpf"
    echo "chars: $n"
    ( cd ../../home 2>/dev/null && ls -la{r.choice(["", "h", "t"])} > /dev/null )
    cp "$tmpf" copy.txt && mv copy.txt moved.txt && rm -f moved.txt
    env | {r.choice(["sort | head -n 3", "grep -c =", "cut -d= -f1 | sort | tail -n 2"])}
    date {r.choice(["+%F", "-u +%s", "+%H:%M", "-R"])}
    dash -c 'for x in {words(r, 3)}; do echo "$x"; done | wc -l'
    {shell_oneliners}
    trap - USR1
}}""")

    names = ["logs", "backup", "findings", "python_work", "service", "gitwork", "makework",
             "perlwork", "shellwork"]
    # logs first (the others read access.log); the rest in a drawn order, each on most rounds.
    order = ["logs"] + [n for n in r.sample(names[1:], len(names) - 1) if r.random() < 0.85]
    return "\n".join(out) + "\n\n" + "\n".join(f"{n} > /dev/null" for n in order)
