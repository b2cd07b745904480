//! Trace parsers: every input format becomes the same stream of [`trace::Record`]s.
//!
//! ebpfh's own recordings pass through unchanged. Text traces are turned into what the kernel
//! hooks would have reported: an `Exec` when a process starts (or execs), a `Call` per system
//! call, a `Fork` when a child appears, `Signal`/`Sigreturn` around handlers and an `Exit` at the
//! end. Executables get synthetic profile keys ([`key_for`]), announced once per trace with an
//! `Exe` record so events can name them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::profile::ProfileKey;
use crate::syscalls::{self, Abi};
use crate::trace::{self, Record, TraceError};

/// The input layouts `ebpfh replay` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ebpfh's own recordings (`ebpfh record`).
    Ebt,
    /// `strace -f` output (with or without `-t`, `-tt`, `-ttt`, `-T`).
    Strace,
    /// One `PID SYSCALL-NUMBER` pair per line (the UNM data sets).
    PidNr,
    /// Whitespace-separated system-call numbers, one trace per file (ADFA-LD).
    Adfa,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ebt => "ebt",
            Format::Strace => "strace",
            Format::PidNr => "pid-nr",
            Format::Adfa => "adfa",
        }
    }
}

/// The executable identity of processes whose executable the input does not name.
pub const GLOBAL: &str = "(global)";

/// Synthetic profile key of an executable identity (a path, or [`GLOBAL`]): device 0 and, as
/// the inode, the 64-bit FNV-1a hash of the identity's UTF-8 bytes. Real keys never have device
/// 0, so the two kinds cannot be confused; the hash is stable across runs and machines.
pub fn key_for(identity: &str) -> ProfileKey {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in identity.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ProfileKey::file(0, h)
}

/// What a parser learned about one file besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceInfo {
    /// The records carry real times (ebt, strace with -t/-tt/-ttt).
    pub timed: bool,
    /// The system-call table of the numbers in the records.
    pub abi: Abi,
    /// strace names not in the ABI's table (each call was replayed as OTHER), with counts.
    pub unknown_names: BTreeMap<String, u64>,
}

/// Why a file could not be read; the message names the file (quoted) and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("'{0}' is not an ebpfh trace")]
    NotEbt(String),
    #[error("'{0}' is truncated: it ends inside a record or before its footer")]
    Truncated(String),
    #[error("'{0}' was written by a newer ebpfh (trace format {1}); upgrade ebpfh to read it")]
    Newer(String, u32),
    #[error("'{0}' is corrupt: {1}")]
    Corrupt(String, String),
    #[error("cannot read '{0}': {1}")]
    Io(String, std::io::Error),
    #[error("'{0}' is not a trace ebpfh can read (an .ebt recording, strace output, 'pid syscall' lines or syscall numbers); name its layout with --format")]
    Unknown(String),
    #[error("'{0}' line {1} is not {2}")]
    Line(String, usize, &'static str),
    #[error("'{0}' is empty: it holds no {1} record")]
    Empty(String, &'static str),
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Guesses a file's format from its first bytes: the .ebt magic; a line of strace syntax
/// (`name(`); only numbers, two per line (pid-nr) or otherwise laid out (adfa).
pub fn detect(path: &Path) -> Result<Format, ParseError> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| ParseError::Io(shown(path), e))?;
    if head.starts_with(trace::MAGIC) {
        return Ok(Format::Ebt);
    }
    let is_ebt_name = path.extension().is_some_and(|e| e == "ebt");
    if is_ebt_name || head.contains(&0) {
        // A binary file, or one that claims to be a recording: only .ebt could read it.
        return Err(ParseError::NotEbt(shown(path)));
    }
    let text = String::from_utf8_lossy(&head);
    // The last line may be cut by the 4 KiB window; judge only whole lines when there are some.
    let mut lines: Vec<&str> = text.lines().collect();
    if head.len() == 4096 && lines.len() > 1 {
        lines.pop();
    }
    let lines: Vec<&str> = lines.into_iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        // An empty file: a trace of no calls (ADFA has a few).
        return Ok(Format::Adfa);
    }
    if lines.iter().any(|l| strace_line(l).is_some()) {
        return Ok(Format::Strace);
    }
    let numeric = |l: &&str| l.split_ascii_whitespace().all(|t| t.parse::<i64>().is_ok());
    if lines.iter().all(numeric) {
        let pairs = lines
            .iter()
            .all(|l| l.split_ascii_whitespace().count() == 2);
        return Ok(if pairs && lines.len() >= 2 {
            Format::PidNr
        } else {
            Format::Adfa
        });
    }
    Err(ParseError::Unknown(shown(path)))
}

/// Reads one trace file, handing each record to `sink` in file order.
pub fn read(
    path: &Path,
    format: Format,
    abi: Abi,
    sink: &mut dyn FnMut(&Record),
) -> Result<TraceInfo, ParseError> {
    match format {
        Format::Ebt => read_ebt(path, sink),
        Format::Strace => {
            let bytes = std::fs::read(path).map_err(|e| ParseError::Io(shown(path), e))?;
            let text = String::from_utf8_lossy(&bytes);
            // Lines strace did not write are skipped, but a file of nothing else is no trace:
            // replaying it silently would score a binary or a typo as a clean run.
            if !text.lines().any(|l| strace_line(l).is_some()) {
                return Err(match text.lines().position(|l| !l.trim().is_empty()) {
                    Some(i) => ParseError::Line(shown(path), i + 1, "strace output"),
                    None => ParseError::Empty(shown(path), "strace"),
                });
            }
            Ok(parse_strace(&text, abi, sink))
        }
        Format::PidNr => {
            let bytes = std::fs::read(path).map_err(|e| ParseError::Io(shown(path), e))?;
            parse_pid_nr(&bytes, abi, sink)
                .map_err(|line| ParseError::Line(shown(path), line, "'PID SYSCALL-NUMBER'"))
        }
        Format::Adfa => {
            let bytes = std::fs::read(path).map_err(|e| ParseError::Io(shown(path), e))?;
            parse_adfa(&bytes, abi, sink).map_err(|line| {
                ParseError::Line(shown(path), line, "whitespace-separated syscall numbers")
            })
        }
    }
}

fn read_ebt(path: &Path, sink: &mut dyn FnMut(&Record)) -> Result<TraceInfo, ParseError> {
    let file = File::open(path).map_err(|e| ParseError::Io(shown(path), e))?;
    let named = |e: TraceError| match e {
        TraceError::NotATrace => ParseError::NotEbt(shown(path)),
        TraceError::Truncated => ParseError::Truncated(shown(path)),
        TraceError::Newer(v) => ParseError::Newer(shown(path), v),
        TraceError::Corrupt(why) => ParseError::Corrupt(shown(path), why),
        TraceError::Io(e) => ParseError::Io(shown(path), e),
    };
    let reader = trace::Reader::new(BufReader::with_capacity(1 << 16, file)).map_err(named)?;
    let abi = reader.abi;
    for r in reader {
        sink(&r.map_err(named)?);
    }
    Ok(TraceInfo {
        timed: true,
        abi,
        unknown_names: BTreeMap::new(),
    })
}

/// Announces `identity` (once per trace) and returns its key.
fn announce(
    seen: &mut HashMap<String, ProfileKey>,
    identity: &str,
    sink: &mut dyn FnMut(&Record),
) -> ProfileKey {
    if let Some(&k) = seen.get(identity) {
        return k;
    }
    let key = key_for(identity);
    seen.insert(identity.to_string(), key);
    sink(&Record::Exe {
        key,
        path: identity.to_string(),
        script: String::new(),
    });
    key
}

/// Splits a byte buffer into unsigned decimal numbers; `Err(line)` at the first other token.
fn numbers(bytes: &[u8], mut each: impl FnMut(u64, usize)) -> Result<(), usize> {
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            let mut v: u64 = 0;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                v = v
                    .saturating_mul(10)
                    .saturating_add(u64::from(bytes[i] - b'0'));
                i += 1;
            }
            if i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                return Err(line);
            }
            each(v, line);
        } else if b.is_ascii_whitespace() {
            if b == b'\n' {
                line += 1;
            }
            i += 1;
        } else {
            return Err(line);
        }
    }
    Ok(())
}

/// A syscall number as a symbol: anything past the alphabet is OTHER. The kernel also folds
/// native numbers that have no column (src/columns.rs); replay keeps them apart, because a trace
/// may number its calls for another architecture (ADFA-LD's are i386's).
fn sym(v: u64) -> u16 {
    syscalls::symbol(i64::try_from(v).unwrap_or(-1))
}

/// ADFA-LD: the whole file is one process (tid 1) of the global profile.
pub fn parse_adfa(
    bytes: &[u8],
    abi: Abi,
    sink: &mut dyn FnMut(&Record),
) -> Result<TraceInfo, usize> {
    // Validate first so a bad file produces no records at all.
    numbers(bytes, |_, _| {})?;
    let key = key_for(GLOBAL);
    sink(&Record::Exe {
        key,
        path: GLOBAL.into(),
        script: String::new(),
    });
    sink(&Record::Exec {
        tid: 1,
        tgid: 1,
        key,
        time: 0,
    });
    numbers(bytes, |v, _| {
        sink(&Record::Call {
            tid: 1,
            nr: sym(v),
            time: 0,
        })
    })?;
    sink(&Record::Exit { tid: 1, time: 0 });
    Ok(TraceInfo {
        abi,
        ..TraceInfo::default()
    })
}

/// UNM: `pid nr` per line; each pid is a process of the global profile, started at its first
/// line and ended at the end of the file (the data sets carry no fork or exit information).
pub fn parse_pid_nr(
    bytes: &[u8],
    abi: Abi,
    sink: &mut dyn FnMut(&Record),
) -> Result<TraceInfo, usize> {
    let mut pairs: Vec<(u32, u16)> = Vec::new();
    let mut pending: Option<(u64, usize)> = None;
    let mut bad = None;
    numbers(bytes, |v, line| match pending.take() {
        None => pending = Some((v, line)),
        Some((pid, pl)) if pl == line => match u32::try_from(pid) {
            Ok(pid) => pairs.push((pid, sym(v))),
            Err(_) => bad = bad.or(Some(line)),
        },
        Some((_, pl)) => {
            bad = bad.or(Some(pl));
            pending = Some((v, line));
        }
    })?;
    if let Some((_, line)) = pending {
        bad = bad.or(Some(line));
    }
    if let Some(line) = bad {
        return Err(line);
    }
    let key = key_for(GLOBAL);
    sink(&Record::Exe {
        key,
        path: GLOBAL.into(),
        script: String::new(),
    });
    let mut started: Vec<u32> = Vec::new();
    let mut known: HashSet<u32> = HashSet::new();
    for (pid, nr) in pairs {
        if known.insert(pid) {
            started.push(pid);
            sink(&Record::Exec {
                tid: pid,
                tgid: pid,
                key,
                time: 0,
            });
        }
        sink(&Record::Call {
            tid: pid,
            nr,
            time: 0,
        });
    }
    for pid in started {
        sink(&Record::Exit { tid: pid, time: 0 });
    }
    Ok(TraceInfo {
        abi,
        ..TraceInfo::default()
    })
}

// ---- strace ------------------------------------------------------------------------------------

/// One strace line, split: the `PID` / `[pid N]` prefix, the timestamp, and the rest.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    pid: Option<u32>,
    /// Nanoseconds: since the epoch for -ttt, since midnight for -t/-tt.
    time: Option<Time>,
    rest: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Time {
    Epoch(u64),
    OfDay(u64),
}

fn frac_ns(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    Some(v * 10u64.pow(9 - s.len() as u32))
}

fn parse_time(tok: &str) -> Option<Time> {
    let (whole, frac) = match tok.split_once('.') {
        Some((w, f)) => (w, frac_ns(f)?),
        None => (tok, 0),
    };
    if whole.contains(':') {
        let mut parts = whole.split(':');
        let h: u64 = parts.next()?.parse().ok()?;
        let m: u64 = parts.next()?.parse().ok()?;
        let s: u64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || m > 59 || s > 60 {
            return None;
        }
        Some(Time::OfDay(((h * 60 + m) * 60 + s) * 1_000_000_000 + frac))
    } else if tok.contains('.') {
        let s: u64 = whole.parse().ok()?;
        Some(Time::Epoch(s * 1_000_000_000 + frac))
    } else {
        None
    }
}

/// Whether `rest` starts like something strace prints after the prefixes.
fn strace_body(rest: &str) -> bool {
    if rest.starts_with("+++ ") || rest.starts_with("--- ") || rest.starts_with("<... ") {
        return true;
    }
    let name_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    name_len > 0 && rest.as_bytes().get(name_len) == Some(&b'(')
}

/// Splits a line into prefix, time and body; `None` when the body is not strace syntax.
fn strace_line(line: &str) -> Option<Line<'_>> {
    let mut rest = line.trim_start();
    let mut pid = None;
    if let Some(r) = rest.strip_prefix("[pid") {
        let r = r.trim_start();
        let end = r.find(']')?;
        pid = Some(r[..end].trim().parse().ok()?);
        rest = r[end + 1..].trim_start();
    } else {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits).is_some_and(|b| *b == b' ') {
            pid = Some(rest[..digits].parse().ok()?);
            rest = rest[digits..].trim_start();
        }
    }
    let mut time = None;
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        let end = rest.find(' ')?;
        time = Some(parse_time(&rest[..end])?);
        rest = rest[end..].trim_start();
    }
    strace_body(rest).then_some(Line { pid, time, rest })
}

/// The return value of a finished call's text (`... )     = 3 <0.000012>`), if it is a number.
fn retval(text: &str) -> Option<i64> {
    // The last " = " right after the closing parenthesis (strace pads with spaces to align
    // results); errno explanations in parentheses may follow it.
    let (at, _) = text
        .rmatch_indices(" = ")
        .find(|(i, _)| text[..*i].trim_end().ends_with(')'))?;
    let tok = text[at + 3..].split_ascii_whitespace().next()?;
    tok.parse().ok()
}

/// The first double-quoted string in `s` (strace escapes quotes inside strings as `\"`).
fn first_string(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let mut out = String::new();
    let mut chars = s[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Per-process facts the parser needs between lines.
#[derive(Clone, Debug)]
struct Proc {
    tgid: u32,
    /// Index of the signal-handler table this task uses (shared with CLONE_SIGHAND).
    handlers: usize,
    /// Whether the model has been told about this task (an exec or a fork).
    started: bool,
    /// The text of a call that is `<unfinished ...>`, completed by its `<... resumed>` line.
    pending: Option<(String, String)>,
}

struct Strace<'s> {
    abi: Abi,
    sink: &'s mut dyn FnMut(&Record),
    info: TraceInfo,
    procs: HashMap<u32, Proc>,
    /// Per handler table: the signals with a user handler installed (by name, e.g. SIGCHLD).
    tables: Vec<HashSet<String>>,
    seen: HashMap<String, ProfileKey>,
    /// Lines of tids that appeared while a clone was unfinished, waiting for it to name them.
    waiting: HashMap<u32, Vec<(u64, String)>>,
    waiting_order: Vec<u32>,
    /// Tids a finished clone announced before they printed a line.
    /// The tid standing for lines without a pid prefix (strace -f to a terminal prints the first
    /// process without one until a second process exists).
    unprefixed: Option<u32>,
    unprefixed_alias: Option<u32>,
    time: u64,
    last_of_day: Option<u64>,
    day: u64,
}

/// The synthetic tid of unprefixed lines: above every real pid (pid_max is at most 2^22).
const ROOT_TID: u32 = u32::MAX - 1;

impl Strace<'_> {
    fn emit(&mut self, r: Record) {
        (self.sink)(&r);
    }

    fn clock(&mut self, t: Option<Time>) {
        match t {
            Some(Time::Epoch(ns)) => {
                self.info.timed = true;
                self.time = ns;
            }
            Some(Time::OfDay(ns)) => {
                self.info.timed = true;
                // Times of day go back only when a day passed (strace does not print dates).
                if let Some(last) = self.last_of_day {
                    if ns + 12 * 3600 * 1_000_000_000 < last {
                        self.day += 1;
                    }
                }
                self.last_of_day = Some(ns);
                self.time = self.day * 86_400 * 1_000_000_000 + ns;
            }
            None => {}
        }
    }

    fn new_table(&mut self) -> usize {
        self.tables.push(HashSet::new());
        self.tables.len() - 1
    }

    fn line(&mut self, raw: &str) {
        let Some(l) = strace_line(raw) else {
            return; // strace's own messages ("strace: Process N attached"), blank lines
        };
        self.clock(l.time);
        let tid = match l.pid {
            None => *self.unprefixed.get_or_insert(ROOT_TID),
            Some(p) if Some(p) == self.unprefixed_alias => ROOT_TID,
            Some(p) => p,
        };
        if !self.procs.contains_key(&tid) {
            // A tid nobody created yet: a child whose clone has not returned (its lines come
            // first), the unprefixed first process now printed with its pid, or a process
            // strace attached to.
            if self
                .procs
                .values()
                .any(|p| p.pending.as_ref().is_some_and(|(n, _)| clone_like(n)))
            {
                if !self.waiting.contains_key(&tid) {
                    self.waiting_order.push(tid);
                }
                self.waiting
                    .entry(tid)
                    .or_default()
                    .push((self.time, raw.to_string()));
                return;
            }
            if self.waiting.contains_key(&tid) {
                self.waiting
                    .entry(tid)
                    .or_default()
                    .push((self.time, raw.to_string()));
                return;
            }
            self.adopt(tid);
            if tid != ROOT_TID && !self.procs.contains_key(&tid) {
                // adopt aliased it to the unprefixed process
                return self.line(raw);
            }
        }
        self.body(tid, l.rest);
    }

    /// A tid of unknown origin: the unprefixed process under its real pid, or a new process.
    fn adopt(&mut self, tid: u32) {
        if tid != ROOT_TID
            && self.unprefixed.is_some()
            && self.unprefixed_alias.is_none()
            && self.procs.contains_key(&ROOT_TID)
        {
            self.unprefixed_alias = Some(tid);
            return;
        }
        let handlers = self.new_table();
        self.procs.insert(
            tid,
            Proc {
                tgid: tid,
                handlers,
                started: false,
                pending: None,
            },
        );
    }

    fn start_global(&mut self, tid: u32) {
        let key = announce(&mut self.seen, GLOBAL, self.sink);
        let tgid = self.procs.get(&tid).map_or(tid, |p| p.tgid);
        let time = self.time;
        self.emit(Record::Exec {
            tid,
            tgid,
            key,
            time,
        });
        if let Some(p) = self.procs.get_mut(&tid) {
            p.started = true;
        }
    }

    fn body(&mut self, tid: u32, rest: &str) {
        let time = self.time;
        if rest.starts_with("+++ ") {
            // "+++ exited with N +++", "+++ killed by SIGKILL +++"
            if self.procs.get(&tid).is_some_and(|p| p.started) {
                self.emit(Record::Exit { tid, time });
            }
            self.procs.remove(&tid);
            return;
        }
        if let Some(sig) = rest.strip_prefix("--- ") {
            let name = sig.split([' ', '{']).next().unwrap_or("");
            let handled = self
                .procs
                .get(&tid)
                .is_some_and(|p| p.started && self.tables[p.handlers].contains(name));
            if handled {
                self.emit(Record::Signal { tid, time });
            }
            return;
        }
        if let Some(r) = rest.strip_prefix("<... ") {
            // "<... clone resumed>, child_tidptr=...) = 28964"
            let Some((name, tail)) = r.split_once(" resumed>") else {
                return;
            };
            let pending = self.procs.get_mut(&tid).and_then(|p| p.pending.take());
            let text = match pending {
                Some((n, head)) if n == name => head + tail,
                _ => tail.to_string(),
            };
            self.finish(tid, name, &text);
            return;
        }
        let Some(open) = rest.find('(') else {
            return;
        };
        let name = &rest[..open];
        let text = &rest[open + 1..];
        let nr = self.number(name);
        let started = self.procs.get(&tid).is_some_and(|p| p.started);
        let is_exec = name == "execve" || name == "execveat";
        if !started && !is_exec {
            self.start_global(tid);
        }
        if let Some(nr) = nr {
            self.emit(Record::Call { tid, nr, time });
            if self.abi != Abi::Native
                && self
                    .abi
                    .name(nr)
                    .is_some_and(|n| n == "rt_sigreturn" || n == "sigreturn")
                && crate::model::NR_RT_SIGRETURN != i64::from(nr)
            {
                // The model pops at the native rt_sigreturn only; other ABIs close the frame here.
                self.emit(Record::Sigreturn { tid, time });
            }
        }
        if let Some(head) = text.strip_suffix("<unfinished ...>") {
            if let Some(p) = self.procs.get_mut(&tid) {
                p.pending = Some((name.to_string(), head.to_string()));
            }
        } else {
            self.finish(tid, name, text);
        }
    }

    /// The number of a call strace named; unknown names are counted and replayed as OTHER.
    fn number(&mut self, name: &str) -> Option<u16> {
        if let Some(n) = self.abi.number(name) {
            return Some(n);
        }
        // strace prints calls it has no name for as syscall_0x1c8 (or syscall_456).
        if let Some(n) = name.strip_prefix("syscall_") {
            let v = match n.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => n.parse().ok(),
            };
            if let Some(v) = v {
                return Some(syscalls::symbol(v));
            }
        }
        *self.info.unknown_names.entry(name.to_string()).or_insert(0) += 1;
        Some(syscalls::SYM_OTHER)
    }

    /// A call's result is known: clones create children, execs switch executables, and
    /// sigaction changes which signals run a handler.
    fn finish(&mut self, tid: u32, name: &str, text: &str) {
        let ret = retval(text);
        if clone_like(name) {
            if let Some(child) = ret.filter(|&r| r > 0).and_then(|r| u32::try_from(r).ok()) {
                self.fork(tid, child, text);
            }
            self.release_waiting();
        } else if name == "execve" || name == "execveat" {
            if ret == Some(0) {
                let path = if name == "execveat" {
                    text.split_once(',').and_then(|(_, r)| first_string(r))
                } else {
                    first_string(text)
                };
                let path = path.unwrap_or_else(|| GLOBAL.to_string());
                let key = announce(&mut self.seen, &path, self.sink);
                let time = self.time;
                let handlers = self.new_table();
                if let Some(p) = self.procs.get_mut(&tid) {
                    p.started = true;
                    // exec resets handled signals to their defaults and unshares the table.
                    p.handlers = handlers;
                    let tgid = p.tgid;
                    self.emit(Record::Exec {
                        tid,
                        tgid,
                        key,
                        time,
                    });
                }
            } else if self.procs.get(&tid).is_some_and(|p| !p.started) {
                // A failed first exec: the process goes on in an image the trace does not name.
                self.start_global(tid);
            }
        } else if (name == "rt_sigaction" || name == "sigaction") && ret == Some(0) {
            self.sigaction(tid, text);
        }
    }

    fn sigaction(&mut self, tid: u32, text: &str) {
        let Some((sig, rest)) = text.split_once(',') else {
            return;
        };
        let rest = rest.trim_start();
        // The second argument is the new action; NULL only queries.
        let Some(act) = rest.strip_prefix("{sa_handler=") else {
            return;
        };
        let handler = act.split([',', '}']).next().unwrap_or("");
        let Some(p) = self.procs.get(&tid) else {
            return;
        };
        let table = &mut self.tables[p.handlers];
        if handler == "SIG_DFL" || handler == "SIG_IGN" {
            table.remove(sig.trim());
        } else {
            table.insert(sig.trim().to_string());
        }
    }

    fn fork(&mut self, parent: u32, child: u32, text: &str) {
        let Some(p) = self.procs.get(&parent).cloned() else {
            return;
        };
        let thread = text.contains("CLONE_THREAD");
        let handlers = if text.contains("CLONE_SIGHAND") {
            p.handlers
        } else {
            let copy = self.tables[p.handlers].clone();
            self.tables.push(copy);
            self.tables.len() - 1
        };
        let tgid = if thread { p.tgid } else { child };
        self.procs.insert(
            child,
            Proc {
                tgid,
                handlers,
                started: p.started,
                pending: None,
            },
        );
        if p.started {
            let time = self.time;
            self.emit(Record::Fork {
                child,
                tgid,
                parent,
                time,
            });
        }
        if let Some(lines) = self.waiting.remove(&child) {
            self.waiting_order.retain(|&t| t != child);
            self.replay(lines);
        }
    }

    /// Once no clone is unfinished, tids still waiting will not be named by one: adopt them.
    fn release_waiting(&mut self) {
        let busy = self
            .procs
            .values()
            .any(|p| p.pending.as_ref().is_some_and(|(n, _)| clone_like(n)));
        if busy {
            return;
        }
        let order = std::mem::take(&mut self.waiting_order);
        for tid in order {
            if let Some(lines) = self.waiting.remove(&tid) {
                self.replay(lines);
            }
        }
    }

    fn replay(&mut self, lines: Vec<(u64, String)>) {
        let now = self.time;
        for (_, l) in lines {
            self.line(&l);
        }
        self.time = self.time.max(now);
    }

    fn end(&mut self) {
        self.waiting_order.clear();
        let rest: Vec<_> = self.waiting.drain().collect();
        for (_, lines) in rest {
            self.replay(lines);
        }
        let mut alive: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.started)
            .map(|(&t, _)| t)
            .collect();
        alive.sort_unstable();
        let time = self.time;
        for tid in alive {
            self.emit(Record::Exit { tid, time });
        }
    }
}

/// Whether strace output carries timestamps (judged by its first strace line).
pub fn strace_timed(text: &str) -> bool {
    text.lines()
        .find_map(strace_line)
        .is_some_and(|l| l.time.is_some())
}

fn clone_like(name: &str) -> bool {
    matches!(name, "clone" | "clone3" | "fork" | "vfork")
}

/// strace output (`strace -f [-t|-tt|-ttt] [-T] [-o FILE]`) as model inputs. Executables are
/// identified by the path given to `execve`; a process first seen without an exec runs under
/// the global profile until it execs. See the README for the signal-handler rule.
pub fn parse_strace(text: &str, abi: Abi, sink: &mut dyn FnMut(&Record)) -> TraceInfo {
    let mut s = Strace {
        abi,
        sink,
        info: TraceInfo {
            abi,
            ..TraceInfo::default()
        },
        procs: HashMap::new(),
        tables: Vec::new(),
        seen: HashMap::new(),
        waiting: HashMap::new(),
        waiting_order: Vec::new(),
        unprefixed: None,
        unprefixed_alias: None,
        time: 0,
        last_of_day: None,
        day: 0,
    };
    for line in text.lines() {
        s.line(line);
    }
    s.end();
    s.info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: impl FnOnce(&mut dyn FnMut(&Record))) -> Vec<Record> {
        let mut v = Vec::new();
        f(&mut |r: &Record| v.push(r.clone()));
        v
    }

    #[test]
    fn keys_are_stable_fnv1a_hashes() {
        // FNV-1a 64 of "" is the offset basis; of "a" the published test vector.
        assert_eq!(key_for("").ino, 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_for("a").ino, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_for("/bin/sh").kdev, 0);
    }

    #[test]
    fn strace_prefixes_and_times_are_split() {
        let l = strace_line("[pid  1234] 12:00:01.5 read(3, \"\", 4) = 0").unwrap();
        assert_eq!(l.pid, Some(1234));
        assert_eq!(l.time, Some(Time::OfDay(43_201_500_000_000)));
        assert!(l.rest.starts_with("read("));
        let l = strace_line("28999 1795476442.139952 exit_group(0)   = ?").unwrap();
        assert_eq!(l.pid, Some(28999));
        assert_eq!(l.time, Some(Time::Epoch(1_795_476_442_139_952_000)));
        let l = strace_line("brk(NULL) = 0x55").unwrap();
        assert_eq!((l.pid, l.time), (None, None));
        assert!(strace_line("strace: Process 5 attached").is_none());
        assert!(strace_line("6 6 63 6 42").is_none());
        assert!(strace_line("1234 5").is_none());
    }

    #[test]
    fn return_values_and_strings() {
        assert_eq!(retval("NULL, 8) = 0 <0.000009>"), Some(0));
        assert_eq!(retval(", child_tidptr=0x7f) = 28964"), Some(28964));
        assert_eq!(retval(")              = 4767"), Some(4767));
        assert_eq!(retval("3, \"a) = 5\", 5) = ?"), None);
        assert_eq!(retval("\"/x\") = -1 ENOENT (No such file)"), Some(-1));
        assert_eq!(
            first_string(r#""/bin/s\"h", ["sh"]"#).as_deref(),
            Some("/bin/s\"h")
        );
    }

    #[test]
    fn adfa_is_one_global_process() {
        let recs = collect(|s| {
            parse_adfa(b"6 6 63\n600 ", Abi::X86_64, s).unwrap();
        });
        let g = key_for(GLOBAL);
        assert_eq!(
            recs,
            vec![
                Record::Exe {
                    key: g,
                    path: GLOBAL.into(),
                    script: String::new(),
                },
                Record::Exec {
                    tid: 1,
                    tgid: 1,
                    key: g,
                    time: 0
                },
                Record::Call {
                    tid: 1,
                    nr: 6,
                    time: 0
                },
                Record::Call {
                    tid: 1,
                    nr: 6,
                    time: 0
                },
                Record::Call {
                    tid: 1,
                    nr: 63,
                    time: 0
                },
                Record::Call {
                    tid: 1,
                    nr: syscalls::SYM_OTHER,
                    time: 0
                },
                Record::Exit { tid: 1, time: 0 },
            ]
        );
        assert_eq!(parse_adfa(b"1 2\n3 x4\n", Abi::X86_64, &mut |_| {}), Err(2));
    }

    #[test]
    fn pid_nr_lines_must_be_pairs() {
        assert_eq!(
            parse_pid_nr(b"1 2\n3\n4 5\n", Abi::X86_64, &mut |_| {}),
            Err(2)
        );
        assert_eq!(
            parse_pid_nr(b"1 2\n3 4 5\n", Abi::X86_64, &mut |_| {}),
            Err(2)
        );
    }
}
