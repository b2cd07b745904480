//! The `ebpfh` command line: parses arguments and turns errors into one sentence and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ebpfh::bpf::Capacity;
use ebpfh::control::protocol::{Op, Request, Response, Target};
use ebpfh::control::{client, print, DEFAULT_RUN_DIR};
use ebpfh::settings::{defaults, parse_duration, Settings};
use ebpfh::store::DEFAULT_DIR;
use ebpfh::{config, monitor, record, tui};

/// Host-based intrusion detection: learns each program's system calls and reports what is new.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    monitor: MonitorArgs,
    /// More detail on stderr, including libbpf's and the verifier's messages.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Where the monitor's control socket and pid file are.
    #[arg(long, value_name = "DIR", global = true, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// The configuration file (default: /etc/ebpfh/ebpfh.toml when it exists): TOML whose keys
    /// are these long options written with _, e.g. normal_wait = "10m"; flags override it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The live dashboard (the default); starts a monitor in-process when none is running.
    Top(TopArgs),
    /// Monitoring state, totals, rates, losses and settings of the running monitor.
    Status(JsonArg),
    /// Traced processes with their profiles and locality-frame counts.
    Ps {
        /// One row per thread instead of one per process.
        #[arg(short, long)]
        threads: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Every profile with its state and counters.
    Profiles(JsonArg),
    /// One profile in detail.
    Profile {
        #[command(subcommand)]
        cmd: ProfileCmd,
    },
    /// Start detecting with a profile now: its training data becomes its testing data.
    Normalize(CommandArgs),
    /// Forget a profile's training data (a normal profile keeps detecting).
    Sensitize(CommandArgs),
    /// Stop detecting with a profile and go back to training.
    Tolerize(CommandArgs),
    /// Forget everything a profile learned.
    Reset(CommandArgs),
    /// Freeze a profile now; it becomes normal after normal_wait.
    Freeze(CommandArgs),
    /// Accept what a normal profile learned since it became normal (its pending pairs): it
    /// stops being flagged.
    Accept(CommandArgs),
    /// Change a setting of the running monitor (monitoring, normal_wait, normal_factor,
    /// normal_factor_den, anomaly_limit, tolerize_limit, log_sequences).
    Set {
        setting: String,
        value: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Write every profile to disk now.
    Save(JsonArg),
    /// Record what the kernel program processes into a trace file, for `ebpfh replay`.
    Record(RecordArgs),
    /// Resume every process ebpfh's delay response has stopped (systemd runs it when the service stops).
    Resume(ResumeArgs),
    /// Feed traces through the pH model offline: evaluate detection (--train with --normal/--attack)
    /// or replay in order and print the monitor's JSON lines.
    Replay(ReplayArgs),
    /// Print the effective configuration: every option's value and where it came from (default,
    /// the configuration file and line, or a flag given here).
    Config(ConfigArgs),
    /// Print a shell completion script (`make completions` writes them).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page in roff (`make man` writes it).
    #[command(hide = true)]
    Man,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    #[command(flatten)]
    monitor: MonitorArgs,
}

#[derive(Args, Debug)]
struct ResumeArgs {
    /// Resume all of them (the only mode, spelled out so the command reads as what it does).
    #[arg(long, required = true)]
    all: bool,
    /// The monitor's state directory, where the list of stopped processes is kept.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ProfileCmd {
    /// State, counters and the learned lookahead pairs of one profile.
    Show {
        /// The executable's path or file name, or its DEV:INODE key.
        #[arg(value_name = "EXE|KEY")]
        profile: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Write profiles to a bundle, by content identity, for other hosts (all when none is named).
    Export {
        /// Executables' paths or file names, or DEV:INODE keys.
        #[arg(value_name = "EXE|KEY")]
        profiles: Vec<String>,
        /// The bundle to write ('-' for standard output).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Read the profiles from this state directory instead of asking the running monitor.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Merge bundles' profiles into this host's, matched by content identity.
    Import {
        /// Bundles to import ('-' for standard input).
        #[arg(value_name = "FILE", required = true)]
        bundles: Vec<PathBuf>,
        /// How the state of a profile this host already has combines with the bundle's:
        /// the less advanced of the two, the bundle's, or normal at once.
        #[arg(
            long = "as",
            value_name = "STATE",
            value_enum,
            default_value = "stricter"
        )]
        how: ebpfh::bundle::ImportAs,
        /// Import into this state directory instead of the running monitor (none may run on it).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Merge bundles into one, offline: pairs unioned, in any order, as often as you like.
    Merge {
        #[arg(value_name = "FILE", required = true)]
        bundles: Vec<PathBuf>,
        /// The merged bundle ('-' for standard output).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a bundle to FILE or standard output, and says what it holds on standard error.
fn write_bundle(output: &std::path::Path, bytes: &[u8], what: &str) -> anyhow::Result<()> {
    ebpfh::bundle::write(output, bytes)
        .with_context(|| format!("cannot write the bundle '{}'", output.display()))?;
    if output != std::path::Path::new("-") {
        eprintln!("{what} to '{}'", output.display());
    }
    Ok(())
}

fn profile_fleet(run_dir: &std::path::Path, cmd: ProfileCmd) -> anyhow::Result<u8> {
    use ebpfh::bundle::{self, Body};
    match cmd {
        ProfileCmd::Show { .. } => unreachable!("handled by the caller"),
        ProfileCmd::Export {
            profiles,
            output,
            state_dir,
        } => {
            let offline = state_dir.is_some();
            let (bytes, n, skipped) = match state_dir {
                Some(dir) => {
                    let (body, skipped) = ebpfh::fleet::export_dir(
                        &dir,
                        &profiles,
                        &host_name(),
                        &ebpfh::settings::Settings::default(),
                    )
                    .map_err(anyhow::Error::msg)?;
                    (body.encode(), body.profiles.len(), skipped)
                }
                None => match client_request(
                    run_dir,
                    "profile export",
                    Request::Export { targets: profiles },
                )? {
                    Response::Bundle { bundle, skipped } => {
                        let n = Body::decode(bundle.as_bytes())
                            .map_err(|e| anyhow::anyhow!("the monitor's bundle {e}"))?
                            .profiles
                            .len();
                        (bundle.into_bytes(), n, skipped)
                    }
                    other => anyhow::bail!("the monitor answered {other:?} to an export"),
                },
            };
            // A running monitor hashes off its loop: a profile just created may not be yet.
            let why = if offline {
                "the file could not be read"
            } else {
                "the file could not be read, or the monitor is still hashing it: try again"
            };
            for s in &skipped {
                eprintln!("left out {s}: its content identity is unknown ({why})");
            }
            write_bundle(&output, &bytes, &format!("wrote {n} profiles"))?;
            Ok(0)
        }
        ProfileCmd::Import {
            bundles,
            how,
            state_dir,
            json,
        } => {
            // Checked here first, so a bad bundle is refused before anything is asked.
            let bodies = bundle::read_all(&bundles).map_err(anyhow::Error::msg)?;
            let outcomes = match state_dir {
                Some(dir) => ebpfh::fleet::import_dir(&dir, &bodies, how, &host_name())
                    .map_err(anyhow::Error::msg)?,
                None => {
                    let req = Request::Import {
                        bundles: bodies
                            .iter()
                            .map(|b| String::from_utf8(b.encode()).expect("bundles are JSON"))
                            .collect(),
                        names: bundles.iter().map(|p| p.display().to_string()).collect(),
                        how,
                    };
                    match client_request(run_dir, "profile import", req)? {
                        Response::Imported(o) => o,
                        other => anyhow::bail!("the monitor answered {other:?} to an import"),
                    }
                }
            };
            if json.json {
                out(&format!("{}\n", serde_json::to_string_pretty(&outcomes)?))?;
            } else {
                out(&print::imported(&outcomes))?;
            }
            Ok(0)
        }
        ProfileCmd::Merge { bundles, output } => {
            let bodies = bundle::read_all(&bundles).map_err(anyhow::Error::msg)?;
            let merged = bundle::merge(&host_name(), &bodies);
            write_bundle(
                &output,
                &merged.encode(),
                &format!(
                    "merged {} bundles into {} profiles",
                    bodies.len(),
                    merged.profiles.len()
                ),
            )?;
            Ok(0)
        }
    }
}

#[derive(Args, Debug, Clone, Copy)]
struct JsonArg {
    /// Print JSON instead of columns.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// The profile: an executable's path or file name, or a DEV:INODE key.
    #[arg(long, value_name = "EXE|KEY")]
    profile: Option<String>,
    /// The profile process PID runs under.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
}

#[derive(Args, Debug)]
struct CommandArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    json: JsonArg,
}

impl TargetArgs {
    fn target(&self) -> Target {
        match (&self.profile, self.pid) {
            (_, Some(pid)) => Target::Pid(pid),
            (Some(p), None) => Target::Profile(p.clone()),
            // clap's group requires one of them.
            (None, None) => Target::Profile(String::new()),
        }
    }
}

#[derive(Args, Debug)]
struct TopArgs {
    #[command(flatten)]
    monitor: MonitorOpts,
}

/// pH's tunables, shared by the monitor and `record`.
#[derive(Args, Debug, Clone)]
struct Tunables {
    /// How long a profile stays frozen before it becomes normal (e.g. 3s, 10m, 7d).
    #[arg(long, value_name = "DURATION", default_value = defaults::NORMAL_WAIT_TEXT, value_parser = parse_duration)]
    normal_wait: Duration,
    /// Anomalous calls a normal profile tolerates before it stops being normal.
    #[arg(long, value_name = "N", default_value_t = defaults::ANOMALY_LIMIT)]
    anomaly_limit: u32,
    /// A task whose recent anomalies (LFC, of the last 128 calls) exceed N resets its profile's training.
    #[arg(long, value_name = "N", default_value_t = defaults::TOLERIZE_LIMIT)]
    tolerize_limit: u32,
    /// pH's freeze rule: a profile freezes once train_count / (train_count - last_mod_count) < FACTOR/DEN.
    #[arg(long, value_name = "N", default_value_t = defaults::NORMAL_FACTOR)]
    normal_factor: u32,
    #[arg(long, value_name = "N", default_value_t = defaults::NORMAL_FACTOR_DEN, value_parser = clap::value_parser!(u32).range(1..))]
    normal_factor_den: u32,
    /// Emit a new_sequence event for every new lookahead pair set learned (verbose).
    #[arg(long)]
    log_sequences: bool,
    /// How profiles become normal: ebpfh (converges on recent novelty over runs; what a normal
    /// profile learns waits for `ebpfh accept`) or ph (pH's rules, bit for bit).
    #[arg(long, value_enum, value_name = "NAME", default_value_t = defaults::LIFECYCLE)]
    lifecycle: ebpfh::settings::Lifecycle,
    /// Give an interpreter running a script file (`./x.sh`, `bash x.sh`, `python3 y.py`) a
    /// profile of its own, so a new script trains its own profile instead of raising anomalies
    /// of the interpreter's; `bash -c`, `python3 -c`/`-m`, `perl -e` and interactive shells keep
    /// the interpreter's profile.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    script_profiles: bool,
    /// The interpreters known by file name (version suffix removed: python3.12 is python), as
    /// NAME or NAME=FAMILY to read an unknown one's options like a known family's.
    #[arg(long, value_name = "LIST", default_value = ebpfh::script::DEFAULT_INTERPRETERS,
          value_parser = ebpfh::script::InterpreterList::parse)]
    interpreters: ebpfh::script::InterpreterList,
    /// Profiles the kernel can hold.
    #[arg(long, value_name = "N", default_value_t = Capacity::DEFAULT.profiles, value_parser = clap::value_parser!(u32).range(16..))]
    max_profiles: u32,
    /// 400-byte lookahead rows the kernel can hold (shared by all profiles; at most 65536).
    #[arg(long, value_name = "N", default_value_t = Capacity::DEFAULT.rows, value_parser = clap::value_parser!(u32).range(64..=i64::from(Capacity::MAX_ROWS)))]
    max_rows: u32,
    /// Profiles one non-root user may create (0 = no limit; default: an eighth of
    /// --max-profiles), so no user can fill the table with programs of their own; at most what
    /// --root-reserve leaves.
    #[arg(long, value_name = "N")]
    uid_quota: Option<u32>,
    /// Profile slots only root's programs may take (default: an eighth of --max-profiles); it
    /// must leave other users at least one.
    #[arg(long, value_name = "N")]
    root_reserve: Option<u32>,
}

impl Tunables {
    fn settings(&self) -> Settings {
        Settings {
            normal_wait: self.normal_wait,
            normal_factor: self.normal_factor,
            normal_factor_den: self.normal_factor_den,
            anomaly_limit: self.anomaly_limit,
            tolerize_limit: self.tolerize_limit,
            log_sequences: self.log_sequences,
            lifecycle: self.lifecycle,
            script_profiles: self.script_profiles,
            interpreters: self.interpreters.0.clone(),
            ..Settings::default()
        }
    }

    fn capacity(&self) -> Capacity {
        let share = Capacity::default_share(self.max_profiles);
        let cap = Capacity {
            profiles: self.max_profiles,
            rows: self.max_rows,
            root_reserve: self.root_reserve.unwrap_or(share),
            ..Capacity::default()
        };
        // A default quota never exceeds what a large --root-reserve leaves to other users.
        Capacity {
            uid_quota: self.uid_quota.unwrap_or(share.min(cap.room())),
            ..cap
        }
    }

    /// The monitor's capacity, refused before anything starts when its quotas cannot work.
    fn checked_capacity(&self) -> anyhow::Result<Capacity> {
        let cap = self.capacity();
        cap.check()?;
        Ok(cap)
    }
}

#[derive(Args, Debug)]
struct MonitorArgs {
    /// Run the monitor without the dashboard (for services and scripts).
    #[arg(long)]
    headless: bool,
    #[command(flatten)]
    opts: MonitorOpts,
}

/// How a monitor runs, whether headless or inside `ebpfh top`.
#[derive(Args, Debug)]
struct MonitorOpts {
    /// Write events as JSON lines to FILE ('-' for standard output; the default with --headless,
    /// none in the dashboard).
    #[arg(long, value_name = "FILE")]
    log: Option<String>,
    /// Where profiles are kept.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    state_dir: PathBuf,
    /// How often profiles are written to disk (they are also saved at exit).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    save_interval: Duration,
    /// Size of the kernel's event ring buffer in bytes (a power of two, at least one page).
    #[arg(long, value_name = "BYTES", default_value_t = Capacity::DEFAULT.ring_bytes, value_parser = parse_ring_bytes)]
    ring_bytes: u32,
    /// Respond to anomalies as pH did: stop a task with recent anomalies for 2^LFC x the delay
    /// factor before it goes on (off by default).
    #[arg(long)]
    respond: bool,
    /// The delay factor in milliseconds (implies --respond; default with --respond: 1).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=60_000))]
    delay_factor: Option<u32>,
    /// Longest single delay.
    #[arg(long, value_name = "DURATION", default_value = defaults::MAX_DELAY_TEXT, value_parser = parse_duration)]
    max_delay: Duration,
    /// An executable that responses never touch (repeatable); PID 1 and ebpfh itself never are.
    #[arg(long, value_name = "PATH")]
    allow: Vec<PathBuf>,
    /// Deny execve to a task whose LFC exceeds N (with --respond: 10; 0 = never). Needs the BPF
    /// LSM (boot with lsm=...,bpf); elsewhere ebpfh says once that it is unavailable.
    #[arg(long, value_name = "N")]
    abort_execve: Option<u32>,
    /// At such an execve, deny it (default) or kill the task.
    #[arg(long, value_name = "ACTION", default_value = "deny", value_parser = ["deny", "kill"])]
    execve_response: String,
    /// Respond only to these executables (repeatable), e.g. to roll responses out service by service.
    #[arg(long, value_name = "PATH")]
    respond_only: Vec<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9464 (off by default).
    #[arg(long, value_name = "ADDR", value_parser = ebpfh::metrics::parse_addr)]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    tunables: Tunables,
    #[command(flatten)]
    incidents: IncidentArgs,
}

/// When a burst of anomalies in one task becomes an `incident` line (monitor and replay alike).
#[derive(Args, Debug, Clone)]
struct IncidentArgs {
    /// A task's incident (its burst of anomalies) ends after this long without an anomaly.
    #[arg(long, value_name = "DURATION", default_value = defaults::INCIDENT_IDLE_TEXT, value_parser = parse_duration)]
    incident_idle: Duration,
    /// An incident still going after this long is reported, and the next one begins.
    #[arg(long, value_name = "DURATION", default_value = defaults::INCIDENT_MAX_DURATION_TEXT, value_parser = parse_duration)]
    incident_max: Duration,
    /// The first N anomalous calls of each incident get their own `anomaly` line; the rest are
    /// counted in the incident line.
    #[arg(long, value_name = "N", default_value_t = defaults::ANOMALY_LINES)]
    anomaly_lines: u64,
    /// Also write the lines of incidents that are not alarms (small or repeated novelty), with
    /// "alarm": false; they are counted either way.
    #[arg(long)]
    log_quiet: bool,
}

impl IncidentArgs {
    fn limits(&self) -> ebpfh::incident::Limits {
        ebpfh::incident::Limits {
            idle_ns: ebpfh::settings::wait_ns(self.incident_idle),
            max_duration_ns: ebpfh::settings::wait_ns(self.incident_max),
            anomaly_lines: self.anomaly_lines,
            log_quiet: self.log_quiet,
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
struct RecordArgs {
    /// The trace file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Size of the kernel's trace ring buffer in bytes (records that do not fit are counted).
    #[arg(long, value_name = "BYTES", default_value_t = Capacity::RECORD_TRACE_BYTES, value_parser = parse_ring_bytes)]
    trace_bytes: u32,
    #[command(flatten)]
    tunables: Tunables,
    /// The command to record, after `--`; without one, the whole system until Ctrl-C.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("inputs").multiple(true).required(true).args(["paths", "train"])))]
struct ReplayArgs {
    /// Online mode: traces replayed in order through the full state machine (JSON lines out).
    #[arg(value_name = "PATH", conflicts_with_all = ["train", "normal", "attack"])]
    paths: Vec<PathBuf>,
    /// Evaluation: traces (files or directories) whose every lookahead pair is learned.
    #[arg(long, value_name = "PATH", num_args = 1.., action = clap::ArgAction::Append)]
    train: Vec<PathBuf>,
    /// Evaluation: normal traces, each scored alone against the trained profiles.
    #[arg(long, value_name = "PATH", num_args = 1.., action = clap::ArgAction::Append, requires = "train")]
    normal: Vec<PathBuf>,
    /// Evaluation: attack traces, each scored alone against the trained profiles.
    #[arg(long, value_name = "PATH", num_args = 1.., action = clap::ArgAction::Append, requires = "train")]
    attack: Vec<PathBuf>,
    /// The traces' layout (detected per file when not given).
    #[arg(long, value_enum)]
    format: Option<ebpfh::replay::Format>,
    /// The system-call table of numbers and names in text traces.
    #[arg(long, value_name = "ABI", default_value = "x86_64", value_parser = parse_abi)]
    abi: ebpfh::syscalls::Abi,
    /// Evaluation: print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Evaluation: write per-trace scores to FILE as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Evaluation: draw the ROC curves into FILE (PNG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Online: how long a profile stays frozen before it turns normal: trace time (10m, 7d) or
    /// calls replayed (5000calls). Default: the recording's setting, else 7d.
    #[arg(long, value_name = "WAIT", value_parser = ebpfh::replay::parse_wait)]
    normal_wait: Option<ebpfh::replay::Wait>,
    /// Online: anomalous calls a normal profile tolerates (default: the recording's, else 30).
    #[arg(long, value_name = "N")]
    anomaly_limit: Option<u32>,
    /// Online: LFC above which a task resets its profile's training (default: the recording's, else 12).
    #[arg(long, value_name = "N")]
    tolerize_limit: Option<u32>,
    /// Online: pH's freeze rule numerator (default: the recording's, else 128).
    #[arg(long, value_name = "N")]
    normal_factor: Option<u32>,
    /// Online: pH's freeze rule denominator (default: the recording's, else 32).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    normal_factor_den: Option<u32>,
    /// Online: a new_sequence line for every call that teaches a profile a pair.
    #[arg(long)]
    log_sequences: bool,
    /// Online: the profile lifecycle (default: the recording's, else ebpfh).
    #[arg(long, value_enum, value_name = "NAME")]
    lifecycle: Option<ebpfh::settings::Lifecycle>,
    /// Online: the `host` field of the JSON lines.
    #[arg(long, value_name = "NAME", default_value = "replay")]
    host: String,
    /// Online: incidents as the monitor makes them (in trace time; untimed input counts one
    /// nanosecond per call).
    #[command(flatten)]
    incidents: IncidentArgs,
}

/// The kernel's spelling of an ABI (x86_64, i386, aarch64), or clap's x86-64, or native.
fn parse_abi(s: &str) -> Result<ebpfh::syscalls::Abi, String> {
    use ebpfh::syscalls::Abi;
    match s {
        "x86_64" | "x86-64" => Ok(Abi::X86_64),
        "i386" => Ok(Abi::I386),
        "aarch64" => Ok(Abi::Aarch64),
        "native" => Ok(Abi::Native),
        _ => Err(format!(
            "'{s}' is not a system-call table; use x86_64, i386 or aarch64"
        )),
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

fn parse_ring_bytes(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of bytes"))?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u32;
    if n.is_power_of_two() && n >= page {
        Ok(n)
    } else {
        Err(format!(
            "'{s}' must be a power of two of at least {page} (e.g. 4194304)"
        ))
    }
}

/// The monitor's own flags (`--headless`, `--log`, ...) given together with a subcommand: they
/// would be ignored, so name the first one. The global options (`--run-dir`, `-v`) are fine.
fn misplaced_monitor_flag(cmd: &clap::Command, m: &clap::ArgMatches) -> Option<String> {
    m.subcommand_name()?;
    cmd.get_arguments()
        .filter(|a| !a.is_global_set())
        .find(|a| m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| {
            a.get_long()
                .map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"))
        })
}

/// Whether an error comes from writing to a pipe whose reader has gone (`ebpfh ps | head -1`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes a client's output to standard output; every client prints through here, so a closed
/// pipe or a full disk is handled in one place (see `main`).
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// Subcommands whose options the configuration file sets too, besides the monitor's own.
const CONFIGURED: &[&str] = &["top", "config", "record", "resume"];

/// What the command line and the configuration file say together.
struct Parsed {
    layer: Option<config::Layer>,
    matches: clap::ArgMatches,
}

/// Parses the command line over the configuration file's values (clap exits on a bad flag; a
/// bad file is one sentence and exit status 2, like a bad flag). Global options work before or
/// after the subcommand.
fn parse() -> (Cli, Parsed) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let plain = Cli::command().get_matches_from(&args);
    // Generated text describes the options themselves, whatever this machine's file says.
    let generating = matches!(plain.subcommand_name(), Some("completions" | "man"));
    let path = match plain.get_one::<PathBuf>(config::CONFIG_ARG) {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(config::DEFAULT_PATH)).filter(|p| p.exists()),
    };
    let layer = path.filter(|_| !generating).map(|p| {
        config::load(&p, &Cli::command()).unwrap_or_else(|e| {
            eprintln!("ebpfh: {e}");
            std::process::exit(2)
        })
    });
    let mut cmd = match &layer {
        Some(l) => l.apply(Cli::command(), CONFIGURED),
        None => Cli::command(),
    };
    let matches = cmd
        .try_get_matches_from_mut(&args)
        .unwrap_or_else(|e| e.exit());
    if let Some(flag) = misplaced_monitor_flag(&cmd, &matches) {
        let sub = matches.subcommand_name().unwrap_or_default();
        cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!("'{flag}' belongs to the monitor (`ebpfh --headless`), not to `ebpfh {sub}`; give it after the subcommand if that takes it, or leave it out"),
        )
        .exit();
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, Parsed { layer, matches })
}

/// `ebpfh config`: the file used, then every key with its value and origin.
fn explain(parsed: &Parsed) -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let sub = cmd
        .find_subcommand("config")
        .expect("the config subcommand exists");
    let matches = parsed
        .matches
        .subcommand_matches("config")
        .unwrap_or(&parsed.matches);
    let head = match &parsed.layer {
        Some(l) => format!("# configuration file: {}\n", l.path.display()),
        None => format!(
            "# no configuration file ({} does not exist)\n",
            config::DEFAULT_PATH
        ),
    };
    head + &config::explain(sub, matches, parsed.layer.as_ref())
}

fn main() -> ExitCode {
    let (cli, parsed) = parse();
    let level = if cli.verbose { "debug" } else { "info" };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    logger.format_timestamp_millis();
    // The dashboard owns the terminal: log lines go to its message line instead of stderr.
    let dashboard = match &cli.command {
        Some(Cmd::Top(_)) => true,
        None => !cli.monitor.headless,
        _ => false,
    };
    let log_buffer = tui::LogBuffer::default();
    if dashboard {
        logger.target(env_logger::Target::Pipe(Box::new(log_buffer.clone())));
    }
    logger.init();
    match run(cli, log_buffer, &parsed) {
        Ok(code) => ExitCode::from(code),
        // Like coreutils: the reader of our output went away, so there is nobody to tell; exit as
        // a process killed by SIGPIPE would report it (128 + 13).
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            // Not eprintln: after the dashboard's terminal hung up, stderr may be gone.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "ebpfh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl MonitorOpts {
    fn options(
        self,
        log: Option<String>,
        run_dir: PathBuf,
        verbose: bool,
    ) -> anyhow::Result<monitor::Options> {
        let capacity = Capacity {
            ring_bytes: self.ring_bytes,
            ..self.tunables.checked_capacity()?
        };
        let mut settings = self.tunables.settings();
        let respond = self.respond || !self.respond_only.is_empty();
        let (delay_factor, abort_execve) = if respond {
            (
                defaults::RESPOND_DELAY_FACTOR_MS,
                defaults::RESPOND_ABORT_EXECVE,
            )
        } else {
            (0, 0)
        };
        settings.delay_factor_ms = self.delay_factor.unwrap_or(delay_factor);
        settings.max_delay = self.max_delay;
        settings.respond_listed = !self.respond_only.is_empty();
        settings.abort_execve = self.abort_execve.unwrap_or(abort_execve);
        settings.execve_kill = self.execve_response == "kill";
        Ok(monitor::Options {
            state_dir: self.state_dir,
            log,
            allow: self.allow,
            respond_only: self.respond_only,
            settings,
            save_interval: self.save_interval,
            capacity,
            verbose,
            run_dir: Some(run_dir),
            stop: None,
            metrics_addr: self.metrics_addr,
            incidents: self.incidents.limits(),
        })
    }
}

/// Sends one request for subcommand `name` and prints the reply.
/// Sends one request for subcommand `name` and returns the reply.
fn client_request(run_dir: &std::path::Path, name: &str, req: Request) -> anyhow::Result<Response> {
    match client::request(run_dir, &req) {
        Ok(resp) => Ok(resp),
        Err(client::ClientError::NeedRoot(_)) => {
            anyhow::bail!("ebpfh {name} needs root to reach the monitor's socket; run it with sudo")
        }
        Err(e) => Err(e.into()),
    }
}

fn client_command(
    run_dir: &std::path::Path,
    name: &str,
    req: Request,
    json: bool,
) -> anyhow::Result<u8> {
    match client::request(run_dir, &req) {
        Ok(resp) => {
            out(&print::response(&resp, json))?;
            Ok(0)
        }
        Err(client::ClientError::NeedRoot(_)) => {
            anyhow::bail!("ebpfh {name} needs root to reach the monitor's socket; run it with sudo")
        }
        Err(e) => Err(e.into()),
    }
}

fn run(cli: Cli, log_buffer: tui::LogBuffer, parsed: &Parsed) -> anyhow::Result<u8> {
    let run_dir = cli.run_dir;
    let command = |op: Op, args: CommandArgs| {
        client_command(
            &run_dir,
            op.as_str(),
            Request::Command {
                op,
                target: args.target.target(),
            },
            args.json.json,
        )
    };
    match cli.command {
        Some(Cmd::Replay(a)) => {
            let opts = ebpfh::replay::Options {
                paths: a.paths,
                train: a.train,
                normal: a.normal,
                attack: a.attack,
                format: a.format,
                abi: a.abi,
                json: a.json,
                csv: a.csv,
                plot: a.plot,
                tunables: ebpfh::replay::Tunables {
                    normal_wait: a.normal_wait,
                    anomaly_limit: a.anomaly_limit,
                    tolerize_limit: a.tolerize_limit,
                    normal_factor: a.normal_factor,
                    normal_factor_den: a.normal_factor_den,
                    log_sequences: a.log_sequences,
                    lifecycle: a.lifecycle,
                },
                host: a.host,
                incidents: a.incidents.limits(),
            };
            ebpfh::replay::run(&opts)?;
            Ok(0)
        }
        Some(Cmd::Resume(args)) => {
            let _ = args.all;
            let n = ebpfh::respond::resume_all(&args.state_dir).with_context(|| {
                format!(
                    "cannot read the list of stopped processes in '{}' (run it with sudo)",
                    args.state_dir.display()
                )
            })?;
            out(&format!("resumed {n} stopped processes\n"))?;
            Ok(0)
        }
        Some(Cmd::Record(args)) => {
            let opts = record::Options {
                output: args.output,
                command: args.command,
                settings: args.tunables.settings(),
                // A recording sees every exec as it happened: no user is refused a profile.
                capacity: Capacity {
                    trace_bytes: args.trace_bytes,
                    uid_quota: 0,
                    root_reserve: 0,
                    ..args.tunables.capacity()
                },
                verbose: cli.verbose,
            };
            let code = record::run(&opts)?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Some(Cmd::Top(args)) => {
            let log = args.monitor.log.clone();
            let opts = args.monitor.options(log, run_dir.clone(), cli.verbose)?;
            tui::run(&run_dir, opts, log_buffer)?;
            Ok(0)
        }
        Some(Cmd::Status(j)) => client_command(&run_dir, "status", Request::Status, j.json),
        Some(Cmd::Ps { threads, json }) => {
            client_command(&run_dir, "ps", Request::Processes { threads }, json.json)
        }
        Some(Cmd::Profiles(j)) => client_command(&run_dir, "profiles", Request::Profiles, j.json),
        Some(Cmd::Profile {
            cmd: ProfileCmd::Show { profile, json },
        }) => client_command(
            &run_dir,
            "profile show",
            Request::Profile {
                target: Target::Profile(profile),
            },
            json.json,
        ),
        Some(Cmd::Profile { cmd }) => profile_fleet(&run_dir, cmd),
        Some(Cmd::Normalize(a)) => command(Op::Normalize, a),
        Some(Cmd::Sensitize(a)) => command(Op::Sensitize, a),
        Some(Cmd::Tolerize(a)) => command(Op::Tolerize, a),
        Some(Cmd::Reset(a)) => command(Op::Reset, a),
        Some(Cmd::Freeze(a)) => command(Op::Freeze, a),
        Some(Cmd::Accept(a)) => command(Op::Accept, a),
        Some(Cmd::Set {
            setting,
            value,
            json,
        }) => client_command(&run_dir, "set", Request::Set { setting, value }, json.json),
        Some(Cmd::Save(j)) => client_command(&run_dir, "save", Request::Save, j.json),
        Some(Cmd::Config(_)) => {
            out(&explain(parsed))?;
            Ok(0)
        }
        Some(Cmd::Completions { shell }) => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "ebpfh", &mut script);
            out(&String::from_utf8_lossy(&script))?;
            Ok(0)
        }
        Some(Cmd::Man) => {
            // A long comma list as a default (`--interpreters`) has no place troff may break a
            // line: show it with spaces, which the list parsers accept too.
            let cmd = Cli::command().mut_args(|a| {
                let shown: Vec<String> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().replace(',', ", "))
                    .collect();
                if shown.iter().any(|v| v.contains(", ")) {
                    a.default_values(shown)
                } else {
                    a
                }
            });
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).section("8").render(&mut page)?;
            out(&String::from_utf8_lossy(&page))?;
            Ok(0)
        }
        None => {
            let m = cli.monitor;
            if !m.headless {
                let log = m.opts.log.clone();
                let opts = m.opts.options(log, run_dir.clone(), cli.verbose)?;
                tui::run(&run_dir, opts, log_buffer)?;
                return Ok(0);
            }
            let log = Some(m.opts.log.clone().unwrap_or_else(|| "-".into()));
            let opts = m.opts.options(log, run_dir, cli.verbose)?;
            monitor::run(&opts)?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The help of `ebpfh SUB` for `--ARG` (doc comments cannot name constants, so they repeat
    /// the defaults; these tests keep them honest).
    fn help(sub: &str, arg: &str) -> String {
        let mut cmd = Cli::command();
        let sub = cmd.find_subcommand_mut(sub).expect("subcommand exists");
        let arg = sub
            .get_arguments()
            .find(|a| a.get_id() == arg)
            .expect("argument exists");
        arg.get_help().expect("argument has help").to_string()
    }

    #[test]
    fn help_texts_name_the_real_defaults() {
        for (arg, value) in [
            ("anomaly_limit", defaults::ANOMALY_LIMIT),
            ("tolerize_limit", defaults::TOLERIZE_LIMIT),
            ("normal_factor", defaults::NORMAL_FACTOR),
            ("normal_factor_den", defaults::NORMAL_FACTOR_DEN),
        ] {
            let h = help("replay", arg);
            assert!(h.contains(&format!("else {value})")), "{arg}: {h}");
        }
        let h = help("replay", "normal_wait");
        assert!(
            h.ends_with(&format!("else {}", defaults::NORMAL_WAIT_TEXT)),
            "{h}"
        );
        let h = help("top", "delay_factor");
        let want = format!("with --respond: {})", defaults::RESPOND_DELAY_FACTOR_MS);
        assert!(h.contains(&want), "{h}");
        let h = help("top", "abort_execve");
        let want = format!("with --respond: {};", defaults::RESPOND_ABORT_EXECVE);
        assert!(h.contains(&want), "{h}");
        let h = help("top", "tolerize_limit");
        let want = format!("of the last {} calls", ebpfh::model::LOCALITY);
        assert!(h.contains(&want), "{h}");
    }

    #[test]
    fn a_default_quota_fits_what_a_large_reserve_leaves() {
        let cli = Cli::try_parse_from([
            "ebpfh",
            "--headless",
            "--max-profiles",
            "16",
            "--root-reserve",
            "14",
        ])
        .unwrap();
        let opts = cli
            .monitor
            .opts
            .options(None, PathBuf::from("/run/x"), false)
            .unwrap();
        // 15 slots, 14 of them root's: the default quota (2, an eighth of 16) becomes 1.
        assert_eq!(
            (opts.capacity.root_reserve, opts.capacity.uid_quota),
            (14, 1)
        );
    }

    #[test]
    fn clap_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["ebpfh", "--headless"]).unwrap();
        let opts = cli
            .monitor
            .opts
            .options(None, PathBuf::from("/run/x"), false)
            .unwrap();
        assert_eq!(opts.settings, Settings::default());
        assert_eq!(opts.state_dir, PathBuf::from(DEFAULT_DIR));
        let c = opts.capacity;
        let d = Capacity::DEFAULT;
        assert_eq!(
            (c.profiles, c.rows, c.ring_bytes, c.trace_bytes),
            (d.profiles, d.rows, d.ring_bytes, d.trace_bytes)
        );
    }
    /// The shipped, commented configuration file names every key with its real default, and
    /// uncommented it is a file ebpfh accepts.
    #[test]
    fn the_shipped_configuration_lists_every_key_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ebpfh.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut cmd = Cli::command();
        cmd.build();
        let mut mentioned = Vec::new();
        let mut uncommented = String::new();
        for line in text.lines() {
            let assignment = line.strip_prefix("# ").unwrap_or(line);
            let Some((key, value)) = assignment.split_once(" = ") else {
                continue;
            };
            if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            mentioned.push(key.to_string());
            uncommented.push_str(&format!("{key} = {value}\n"));
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == key)
                .unwrap_or_else(|| panic!("{key} is not an option"));
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if line.starts_with('#') && !defaults.is_empty() {
                let table: toml::Table = toml::from_str(assignment).unwrap();
                let shown = match &table[key] {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(shown, defaults.join(","), "{key}");
            }
        }
        config::parse(std::path::Path::new(path), &uncommented, &cmd).unwrap();
        let mut keys: Vec<String> = config::keys(&cmd).map(|a| a.get_id().to_string()).collect();
        keys.sort();
        mentioned.sort();
        assert_eq!(mentioned, keys);
    }
}
