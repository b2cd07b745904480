# ebpfh — build, run, test. `sudo make run` and `sudo make test` work on a fresh Debian/Ubuntu.
CARGO ?= cargo
STATE_DIR ?= /var/lib/ebpfh
LOG ?= -
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
# tmux: the dashboard's end-to-end tests drive `ebpfh top` in a real terminal; man-db and
# groff-base: the man page test renders it; prometheus: the metrics test scrapes with it.
APT_PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make gcc bpftool tmux man-db groff-base \
	python3 prometheus
# What `make bench` adds: the peers it compares with (bpftrace, strace, auditd; nginx under ab's
# fixed request count and redis-server under redis-benchmark's), and python3 for the harness.
BENCH_PACKAGES := bpftrace strace auditd nginx apache2-utils redis-server redis-tools python3 util-linux
# The services those packages bring: `make bench` starts its own instances and stops them, so
# none of these is left running or enabled by bench-deps.
BENCH_SERVICES := nginx redis-server auditd
# make install: PREFIX=/usr/local puts the binary in /usr/local/sbin; DESTDIR for packaging.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/sbin
UNITDIR ?= /etc/systemd/system
LOGROTATEDIR ?= /etc/logrotate.d
CONFDIR ?= /etc/ebpfh
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# Generated from the clap definitions by `make completions man`.
GEN := target/gen

.PHONY: fuzz all deps build release run test test-kernels vm-deps lint fmt vmlinux clean bench bench-deps eval install uninstall \
	completions man

all: build

# Installs the system packages the build needs (Debian/Ubuntu), only when something is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install Rust from rustup.rs or your distribution"; exit 1; }

build: deps
	$(CARGO) build --release

release: build

# Starts the monitor in the foreground; events go to stdout unless LOG=FILE.
run: build
	./target/release/ebpfh --headless --state-dir $(STATE_DIR) --log $(LOG)

# Unit tests, then the BPF integration tests (root, real kernel; they fail without root).
# One test at a time: the BPF tests each run a monitor that traces the whole (2-core) machine.
test: deps lint
	cd eval && python3 -m unittest -q test_score
	cd bench && python3 -m unittest -q test_measure
	$(CARGO) test -- --test-threads=1

# The kernel matrix (root; with TCG ~20 minutes from a fresh clone on a quiet 2-core machine):
# Debian's 6.1 and 6.12 kernels in QEMU run the BPF integration tests and execve abort, and the
# systemd unit runs under a real systemd; see README "Kernels". Downloads and the guest disk are
# cached in target/vm.
VM_PACKAGES := qemu-system-x86 mmdebstrap debian-archive-keyring e2fsprogs
test-kernels: build vm-deps
	bash tests/vm/run.sh

vm-deps:
	@missing=""; for p in $(VM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Runs each fuzz target in tests/fuzz.rs for FUZZ_SECONDS (debug build: overflow checks on);
# a failing input is shrunk and written to target/fuzz-crashes/TARGET/.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --test fuzz -- --test-threads=1 --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Regenerates vmlinux/<arch>/vmlinux.h from the running kernel's BTF.
vmlinux:
	mkdir -p vmlinux/$(ARCH)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

# Benchmarks (root, ~20 minutes): ebpfh side by side with no monitor, empty BPF programs,
# bpftrace, strace and auditd, on loops, process churn, nginx and redis. Prints a table and a
# verdict and writes bench/results.json; see README "Benchmarks". BENCH_ARGS=--quick tries the
# harness in about three minutes; BENCH_ARGS="--compare bench/results.prev.json" also compares
# every figure with an earlier run's; BENCH_ARGS=--breakdown only splits ebpfh's cost per call by
# step (bench/breakdown.py, about two minutes).
bench: deps bench-deps
	$(CARGO) build --release --bin ebpfh --example bpf_reference --example bench_profiles
	python3 bench/bench.py $(BENCH_ARGS)

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing && \
		for s in $(BENCH_SERVICES); do case " $$missing " in *" $$s "*) \
			if [ -d /run/systemd/system ]; then systemctl disable --now $$s >/dev/null 2>&1 || true; \
			else service $$s stop >/dev/null 2>&1 || true; update-rc.d $$s disable >/dev/null 2>&1 || true; fi;; \
		esac; done; \
	fi

# The evaluation (root, 10-15 minutes): everyday programs trained on generated sysadmin days,
# then test days and local attacks; prints detection, false alarms, time to normal, lines per
# incident. EVAL_ARGS=--quick runs 8 training and 3 test days; see README "Evaluation".
EVAL_PACKAGES := python3 bash dash perl tar gzip findutils grep sed mawk coreutils less curl git make gcc
eval: deps
	@missing=""; for p in $(EVAL_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(CARGO) build --release --bin ebpfh
	python3 eval/eval.py $(EVAL_ARGS)

# Shell completions (bash, zsh, fish) and the man page, written by the binary from its own
# command-line definitions, so they always match it.
completions: build
	mkdir -p $(GEN)
	./target/release/ebpfh completions bash > $(GEN)/ebpfh.bash
	./target/release/ebpfh completions zsh > $(GEN)/_ebpfh
	./target/release/ebpfh completions fish > $(GEN)/ebpfh.fish

man: build
	mkdir -p $(GEN)
	./target/release/ebpfh man > $(GEN)/ebpfh.8

# The binary, the systemd unit, the logrotate snippet, completions, the man page and the
# configuration file (never over an existing one); then `systemctl enable --now ebpfh`.
install: build completions man
	install -D -m 0755 target/release/ebpfh $(DESTDIR)$(BINDIR)/ebpfh
	install -D -m 0644 $(GEN)/ebpfh.8 $(DESTDIR)$(MANDIR)/man8/ebpfh.8
	install -D -m 0644 $(GEN)/ebpfh.bash $(DESTDIR)$(BASHCOMPDIR)/ebpfh
	install -D -m 0644 $(GEN)/_ebpfh $(DESTDIR)$(ZSHCOMPDIR)/_ebpfh
	install -D -m 0644 $(GEN)/ebpfh.fish $(DESTDIR)$(FISHCOMPDIR)/ebpfh.fish
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR)
	sed 's|/usr/local/sbin/ebpfh|$(BINDIR)/ebpfh|' assets/ebpfh.service > $(DESTDIR)$(UNITDIR)/ebpfh.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ebpfh.service
	install -m 0644 assets/ebpfh.logrotate $(DESTDIR)$(LOGROTATEDIR)/ebpfh
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/ebpfh.toml ]; then \
		echo "kept the existing $(CONFDIR)/ebpfh.toml (the shipped one is assets/ebpfh.toml)"; \
	else install -m 0644 assets/ebpfh.toml $(DESTDIR)$(CONFDIR)/ebpfh.toml; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed $(BINDIR)/ebpfh; start the service with: systemctl enable --now ebpfh"

# Removes what install put in place; profiles (/var/lib/ebpfh), logs (/var/log/ebpfh) and the
# configuration (/etc/ebpfh) stay.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now ebpfh.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(BINDIR)/ebpfh $(DESTDIR)$(UNITDIR)/ebpfh.service $(DESTDIR)$(LOGROTATEDIR)/ebpfh
	rm -f $(DESTDIR)$(MANDIR)/man8/ebpfh.8 $(DESTDIR)$(BASHCOMPDIR)/ebpfh \
		$(DESTDIR)$(ZSHCOMPDIR)/_ebpfh $(DESTDIR)$(FISHCOMPDIR)/ebpfh.fish
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "removed ebpfh; profiles in /var/lib/ebpfh, logs in /var/log/ebpfh and $(CONFDIR) are kept"

clean:
	$(CARGO) clean
