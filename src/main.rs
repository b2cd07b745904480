//! The `ebpfh` command line: parses arguments and turns errors into one sentence and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ebpfh::bpf::Capacity;
use ebpfh::settings::{parse_duration, Settings};
use ebpfh::{monitor, record};

/// Host-based intrusion detection: learns each program's system calls and reports what is new.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    monitor: MonitorArgs,
    /// More detail on stderr, including libbpf's and the verifier's messages.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Record what the kernel program processes into a trace file, for `ebpfh replay`.
    Record(RecordArgs),
    /// Feed traces through the pH model offline: evaluate detection (--train with --normal/--attack)
    /// or replay in order and print the monitor's JSON lines.
    Replay(ReplayArgs),
}

/// pH's tunables, shared by the monitor and `record`.
#[derive(Args, Debug, Clone)]
struct Tunables {
    /// How long a profile stays frozen before it becomes normal (e.g. 3s, 10m, 7d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    normal_wait: Duration,
    /// Anomalous calls a normal profile tolerates before it stops being normal.
    #[arg(long, value_name = "N", default_value_t = 30)]
    anomaly_limit: u32,
    /// A task whose recent anomalies (LFC, of the last 128 calls) exceed N resets its profile's training.
    #[arg(long, value_name = "N", default_value_t = 12)]
    tolerize_limit: u32,
    /// pH's freeze rule: a profile freezes once train_count / (train_count - last_mod_count) < FACTOR/DEN.
    #[arg(long, value_name = "N", default_value_t = 128)]
    normal_factor: u32,
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    normal_factor_den: u32,
    /// Emit a new_sequence event for every new lookahead pair set learned (verbose).
    #[arg(long)]
    log_sequences: bool,
    /// Profiles the kernel can hold.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..))]
    max_profiles: u32,
    /// 512-byte lookahead rows the kernel can hold (shared by all profiles).
    #[arg(long, value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(64..))]
    max_rows: u32,
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
            ..Settings::default()
        }
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            profiles: self.max_profiles,
            rows: self.max_rows,
            ..Capacity::default()
        }
    }
}

#[derive(Args, Debug)]
struct MonitorArgs {
    /// Run the monitor without the dashboard (for services and scripts).
    #[arg(long)]
    headless: bool,
    /// Write events as JSON lines to FILE ('-' for standard output; default with --headless).
    #[arg(long, value_name = "FILE")]
    log: Option<String>,
    /// Where profiles are kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ebpfh")]
    state_dir: PathBuf,
    /// How often profiles are written to disk (they are also saved at exit).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    save_interval: Duration,
    /// Size of the kernel's event ring buffer in bytes (a power of two, at least one page).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, value_parser = parse_ring_bytes)]
    ring_bytes: u32,
    #[command(flatten)]
    tunables: Tunables,
}

#[derive(Args, Debug)]
struct RecordArgs {
    /// The trace file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Size of the kernel's trace ring buffer in bytes (records that do not fit are counted).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = parse_ring_bytes)]
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
    /// Online: the `host` field of the JSON lines.
    #[arg(long, value_name = "NAME", default_value = "replay")]
    host: String,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ebpfh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
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
                },
                host: a.host,
            };
            ebpfh::replay::run(&opts)?;
            Ok(0)
        }
        Some(Cmd::Record(args)) => {
            let opts = record::Options {
                output: args.output,
                command: args.command,
                settings: args.tunables.settings(),
                capacity: Capacity {
                    trace_bytes: args.trace_bytes,
                    ..args.tunables.capacity()
                },
                verbose: cli.verbose,
            };
            let code = record::run(&opts)?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        None => {
            let m = cli.monitor;
            if !m.headless {
                anyhow::bail!("the dashboard (ebpfh top) is not available yet; run the monitor with --headless");
            }
            let opts = monitor::Options {
                state_dir: m.state_dir,
                log: Some(m.log.unwrap_or_else(|| "-".into())),
                settings: m.tunables.settings(),
                save_interval: m.save_interval,
                capacity: Capacity {
                    ring_bytes: m.ring_bytes,
                    ..m.tunables.capacity()
                },
                verbose: cli.verbose,
            };
            monitor::run(&opts)?;
            Ok(0)
        }
    }
}
