//! Recorded traces (`.ebt`): exactly the inputs of the per-call algorithm, in a compact file.
//!
//! Layout: an 8-byte magic, a u32 version, a u16 ABI, a u16 of flags and the TAI start time
//! (little-endian), then records. Each record is a kind byte followed by LEB128 varints; times are
//! zigzag deltas from the previous record's time (records from different CPUs may step back a
//! little). A trace ends with an `End` record; a file without one was cut short.

use std::io::{self, BufRead, Write};

use crate::profile::{Profile, ProfileKey};
use crate::syscalls::Abi;

pub const MAGIC: &[u8; 8] = b"EBPFHTRC";
/// 2 added the script hash to every key and the script path to `Exe`; 1 is still read.
pub const VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A system call; `nr` is the symbol (ids outside the table are already OTHER).
    Call {
        tid: u32,
        nr: u16,
        time: u64,
    },
    Exit {
        tid: u32,
        time: u64,
    },
    /// A signal handler frame was pushed.
    Signal {
        tid: u32,
        time: u64,
    },
    /// A handler frame was popped by a call not recorded as a native rt_sigreturn.
    Sigreturn {
        tid: u32,
        time: u64,
    },
    /// The tunables the kernel ran with (written first).
    Settings {
        normal_wait_ns: u64,
        normal_factor: u32,
        normal_factor_den: u32,
        anomaly_limit: u32,
        tolerize_limit: u32,
        /// `enum lifecycle`; recordings made before lifecycles existed ran pH's.
        lifecycle: u32,
    },
    Exec {
        tid: u32,
        tgid: u32,
        key: ProfileKey,
        time: u64,
    },
    Fork {
        child: u32,
        tgid: u32,
        parent: u32,
        time: u64,
    },
    /// Found running when recording began (treated like an exec).
    Adopt {
        tid: u32,
        tgid: u32,
        key: ProfileKey,
        time: u64,
    },
    /// The path of an executable (and a script profile's script), written before or after its
    /// first use.
    Exe {
        key: ProfileKey,
        path: String,
        script: String,
    },
    /// The kernel's profile as it was when recording stopped (for comparison with a replay).
    Profile(Box<Profile>),
    /// Footer: records the kernel could not deliver, and calls written.
    End {
        lost: u64,
        calls: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("not an ebpfh trace (it does not start with {MAGIC:?})")]
    NotATrace,
    #[error("written by a newer ebpfh (trace format {0}); upgrade ebpfh to read it")]
    Newer(u32),
    #[error("the trace is truncated (it ends inside a record or before its footer)")]
    Truncated,
    #[error("the trace is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot read the trace: {0}")]
    Io(#[from] io::Error),
}

fn abi_code(abi: Abi) -> u16 {
    match abi {
        Abi::Native if cfg!(target_arch = "aarch64") => 2,
        Abi::Native | Abi::X86_64 => 1,
        Abi::Aarch64 => 2,
        Abi::I386 => 3,
    }
}

fn abi_from(code: u16) -> Result<Abi, TraceError> {
    match code {
        1 => Ok(Abi::X86_64),
        2 => Ok(Abi::Aarch64),
        3 => Ok(Abi::I386),
        other => Err(TraceError::Corrupt(format!("unknown ABI {other}"))),
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
    last_time: u64,
    pub calls: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, abi: Abi, start_time: u64) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&abi_code(abi).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&start_time.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer {
            out,
            buf: Vec::with_capacity(64),
            last_time: start_time,
            calls: 0,
        })
    }

    fn time(&mut self, t: u64) {
        let d = t.wrapping_sub(self.last_time) as i64;
        self.last_time = t;
        put(&mut self.buf, zigzag(d));
    }

    fn key(&mut self, key: ProfileKey) {
        put(&mut self.buf, key.kdev);
        put(&mut self.buf, key.ino);
        put(&mut self.buf, key.script);
    }

    fn text(&mut self, s: &str) {
        put(&mut self.buf, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        self.buf.clear();
        match r {
            Record::Call { tid, nr, time } => {
                self.buf.push(1);
                put(&mut self.buf, u64::from(*tid));
                put(&mut self.buf, u64::from(*nr));
                self.time(*time);
                self.calls += 1;
            }
            Record::Exit { tid, time }
            | Record::Signal { tid, time }
            | Record::Sigreturn { tid, time } => {
                self.buf.push(match r {
                    Record::Exit { .. } => 2,
                    Record::Signal { .. } => 3,
                    _ => 7,
                });
                put(&mut self.buf, u64::from(*tid));
                self.time(*time);
            }
            Record::Exec {
                tid,
                tgid,
                key,
                time,
            }
            | Record::Adopt {
                tid,
                tgid,
                key,
                time,
            } => {
                self.buf.push(if matches!(r, Record::Exec { .. }) {
                    4
                } else {
                    6
                });
                put(&mut self.buf, u64::from(*tid));
                put(&mut self.buf, u64::from(*tgid));
                self.key(*key);
                self.time(*time);
            }
            Record::Fork {
                child,
                tgid,
                parent,
                time,
            } => {
                self.buf.push(5);
                put(&mut self.buf, u64::from(*child));
                put(&mut self.buf, u64::from(*tgid));
                put(&mut self.buf, u64::from(*parent));
                self.time(*time);
            }
            Record::Settings {
                normal_wait_ns,
                normal_factor,
                normal_factor_den,
                anomaly_limit,
                tolerize_limit,
                lifecycle,
            } => {
                // Kind 19 was the same record without the lifecycle.
                self.buf.push(20);
                put(&mut self.buf, *normal_wait_ns);
                for v in [
                    normal_factor,
                    normal_factor_den,
                    anomaly_limit,
                    tolerize_limit,
                    lifecycle,
                ] {
                    put(&mut self.buf, u64::from(*v));
                }
            }
            Record::Exe { key, path, script } => {
                self.buf.push(16);
                self.key(*key);
                self.text(path);
                self.text(script);
            }
            Record::Profile(p) => {
                let bytes = crate::store::encode(p);
                self.buf.push(17);
                put(&mut self.buf, bytes.len() as u64);
                self.buf.extend_from_slice(&bytes);
            }
            Record::End { lost, calls } => {
                self.buf.push(18);
                put(&mut self.buf, *lost);
                put(&mut self.buf, *calls);
            }
        }
        self.out.write_all(&self.buf)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

pub struct Reader<R: BufRead> {
    input: R,
    /// The file's format version (keys carry a script hash from version 2 on).
    pub version: u32,
    pub abi: Abi,
    pub start_time: u64,
    last_time: u64,
    ended: bool,
}

/// Reads exactly `n` bytes; EOF midway is a truncated record.
fn exact<R: BufRead>(r: &mut R, n: usize) -> Result<Vec<u8>, TraceError> {
    let mut v = vec![0; n];
    r.read_exact(&mut v).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => TraceError::Truncated,
        _ => TraceError::Io(e),
    })?;
    Ok(v)
}

fn get<R: BufRead>(r: &mut R) -> Result<u64, TraceError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = exact(r, 1)?[0];
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TraceError::Corrupt(
        "a number is longer than 64 bits".into(),
    ))
}

fn get32<R: BufRead>(r: &mut R) -> Result<u32, TraceError> {
    u32::try_from(get(r)?).map_err(|_| TraceError::Corrupt("a task id exceeds 32 bits".into()))
}

impl<R: BufRead> Reader<R> {
    pub fn new(mut input: R) -> Result<Self, TraceError> {
        let mut h = [0u8; 24];
        if let Err(e) = input.read_exact(&mut h) {
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => TraceError::NotATrace,
                _ => TraceError::Io(e),
            });
        }
        if &h[..8] != MAGIC {
            return Err(TraceError::NotATrace);
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if version > VERSION {
            return Err(TraceError::Newer(version));
        }
        if version == 0 {
            return Err(TraceError::Corrupt("format version 0".into()));
        }
        let abi = abi_from(u16::from_le_bytes([h[12], h[13]]))?;
        let start_time = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        Ok(Reader {
            input,
            version,
            abi,
            start_time,
            last_time: start_time,
            ended: false,
        })
    }

    fn time(&mut self) -> Result<u64, TraceError> {
        let d = unzigzag(get(&mut self.input)?);
        self.last_time = self.last_time.wrapping_add(d as u64);
        Ok(self.last_time)
    }

    fn key(&mut self) -> Result<ProfileKey, TraceError> {
        let kdev = get(&mut self.input)?;
        let ino = get(&mut self.input)?;
        let script = if self.version >= 2 {
            get(&mut self.input)?
        } else {
            0
        };
        Ok(ProfileKey::file(kdev, ino).with_script(script))
    }

    fn text(&mut self) -> Result<String, TraceError> {
        let len = get(&mut self.input)? as usize;
        if len > 4096 {
            return Err(TraceError::Corrupt(format!("a path of {len} bytes")));
        }
        let bytes = exact(&mut self.input, len)?;
        String::from_utf8(bytes).map_err(|_| TraceError::Corrupt("a path is not UTF-8".into()))
    }

    fn record(&mut self, kind: u8) -> Result<Record, TraceError> {
        let r = &mut self.input;
        Ok(match kind {
            1 => {
                let tid = get32(r)?;
                let nr = u16::try_from(get(r)?)
                    .ok()
                    .filter(|&n| usize::from(n) < crate::syscalls::NSYMBOLS)
                    .ok_or_else(|| TraceError::Corrupt("a call number outside the table".into()))?;
                Record::Call {
                    tid,
                    nr,
                    time: self.time()?,
                }
            }
            2 => Record::Exit {
                tid: get32(r)?,
                time: self.time()?,
            },
            3 => Record::Signal {
                tid: get32(r)?,
                time: self.time()?,
            },
            7 => Record::Sigreturn {
                tid: get32(r)?,
                time: self.time()?,
            },
            19 | 20 => Record::Settings {
                normal_wait_ns: get(r)?,
                normal_factor: get32(r)?,
                normal_factor_den: get32(r)?,
                anomaly_limit: get32(r)?,
                tolerize_limit: get32(r)?,
                lifecycle: if kind == 20 {
                    get32(r)?
                } else {
                    crate::settings::Lifecycle::Ph.raw()
                },
            },
            4 | 6 => {
                let tid = get32(r)?;
                let tgid = get32(r)?;
                let key = self.key()?;
                let time = self.time()?;
                if kind == 4 {
                    Record::Exec {
                        tid,
                        tgid,
                        key,
                        time,
                    }
                } else {
                    Record::Adopt {
                        tid,
                        tgid,
                        key,
                        time,
                    }
                }
            }
            5 => {
                let child = get32(r)?;
                let tgid = get32(r)?;
                let parent = get32(r)?;
                Record::Fork {
                    child,
                    tgid,
                    parent,
                    time: self.time()?,
                }
            }
            16 => {
                let key = self.key()?;
                let path = self.text()?;
                let script = if self.version >= 2 {
                    self.text()?
                } else {
                    String::new()
                };
                Record::Exe { key, path, script }
            }
            17 => {
                let len = get(r)? as usize;
                if len > 4 << 20 {
                    return Err(TraceError::Corrupt(format!("a profile of {len} bytes")));
                }
                let bytes = exact(r, len)?;
                let p = crate::store::decode(&bytes)
                    .map_err(|e| TraceError::Corrupt(format!("a profile: {e}")))?;
                Record::Profile(Box::new(p))
            }
            18 => {
                self.ended = true;
                Record::End {
                    lost: get(r)?,
                    calls: get(r)?,
                }
            }
            other => return Err(TraceError::Corrupt(format!("unknown record kind {other}"))),
        })
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let mut kind = [0u8; 1];
        match self.input.read(&mut kind) {
            Ok(0) => {
                self.ended = true;
                Some(Err(TraceError::Truncated))
            }
            Ok(_) => {
                let r = self.record(kind[0]);
                if r.is_err() {
                    self.ended = true;
                }
                Some(r)
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e.into()))
            }
        }
    }
}

/// Drives the model with one record, exactly as the kernel hook that wrote it ran.
pub fn feed(model: &mut crate::model::Model, r: &Record, out: &mut Vec<crate::model::Event>) {
    match *r {
        Record::Call { tid, nr, time } => model.syscall_into(tid, i64::from(nr), time, out),
        Record::Exit { tid, time } => model.exit_into(tid, time, out),
        Record::Signal { tid, .. } => model.signal_handler(tid),
        Record::Sigreturn { tid, .. } => model.sigreturn(tid),
        Record::Exec { tid, key, time, .. } | Record::Adopt { tid, key, time, .. } => {
            out.extend(model.exec(tid, key, time))
        }
        Record::Fork { child, parent, .. } => model.fork(parent, child),
        Record::Settings {
            normal_wait_ns,
            normal_factor,
            normal_factor_den,
            anomaly_limit,
            tolerize_limit,
            lifecycle,
        } => {
            let s = model.settings_mut();
            s.lifecycle = crate::settings::Lifecycle::from_raw(lifecycle);
            s.normal_wait_ns = normal_wait_ns;
            s.normal_factor = normal_factor;
            s.normal_factor_den = normal_factor_den;
            s.anomaly_limit = anomaly_limit;
            s.tolerize_limit = tolerize_limit;
        }
        Record::Exe { .. } | Record::Profile(_) | Record::End { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        let key = ProfileKey::file((259 << 20) | 3, u64::MAX - 5).with_script(u64::MAX - 1);
        let mut p = Profile {
            key,
            exe: "/usr/bin/ls".into(),
            count: 42,
            state: 2,
            ..Profile::default()
        };
        let mut row = Box::new([0u8; 512]);
        row[511] = 0xff;
        p.train.rows.insert(59, row);
        let t = 1_795_468_037_000_000_000;
        vec![
            Record::Settings {
                normal_wait_ns: 2_000_000_000,
                normal_factor: 128,
                normal_factor_den: 32,
                anomaly_limit: 30,
                tolerize_limit: 12,
                lifecycle: 0,
            },
            Record::Adopt {
                tid: 1,
                tgid: 1,
                key,
                time: t,
            },
            Record::Exec {
                tid: 4_000_000,
                tgid: 4_000_000,
                key,
                time: t + 10,
            },
            Record::Exe {
                key,
                path: "/usr/bin/bash".into(),
                script: "/home/u/x.sh".into(),
            },
            Record::Call {
                tid: 4_000_000,
                nr: 59,
                time: t + 10,
            },
            Record::Call {
                tid: 4_000_000,
                nr: 510,
                time: t + 5,
            }, // another CPU, earlier clock
            Record::Fork {
                child: 4_000_001,
                tgid: 4_000_000,
                parent: 4_000_000,
                time: t + 200_000_000,
            },
            Record::Signal {
                tid: 4_000_001,
                time: t + 200_000_000,
            },
            Record::Sigreturn {
                tid: 4_000_001,
                time: t + 200_000_001,
            },
            Record::Exit {
                tid: 4_000_001,
                time: t + 400_000_000,
            },
            Record::Profile(Box::new(p)),
            Record::End { lost: 3, calls: 2 },
        ]
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), Abi::X86_64, 1_795_468_037_000_000_000).unwrap();
        for r in records {
            w.write(r).unwrap();
        }
        assert_eq!(
            w.calls,
            records
                .iter()
                .filter(|r| matches!(r, Record::Call { .. }))
                .count() as u64
        );
        w.finish().unwrap()
    }

    #[test]
    fn records_round_trip() {
        let records = sample();
        let bytes = encode(&records);
        let reader = Reader::new(bytes.as_slice()).unwrap();
        assert_eq!(reader.abi, Abi::X86_64);
        let back: Vec<Record> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(back, records);
    }

    #[test]
    fn calls_are_compact() {
        let key = ProfileKey::file(1, 2);
        let mut records = vec![Record::Exec {
            tid: 123_456,
            tgid: 123_456,
            key,
            time: 7,
        }];
        records.extend((0..1000).map(|i| Record::Call {
            tid: 123_456,
            nr: (i % 300) as u16,
            time: 7,
        }));
        let bytes = encode(&records);
        // kind + 3-byte tid + 1-2 byte number + 1-byte time delta.
        assert!(bytes.len() < 24 + 40 + 1000 * 7, "{} bytes", bytes.len());
    }

    #[test]
    fn every_cut_is_reported_as_truncated() {
        let bytes = encode(&sample());
        for cut in 24..bytes.len() {
            let results: Vec<_> = Reader::new(&bytes[..cut]).unwrap().collect();
            let last = results.last().expect("at least the error");
            assert!(
                matches!(last, Err(TraceError::Truncated)),
                "cut at {cut}: {last:?}"
            );
        }
    }

    #[test]
    fn foreign_and_future_files_are_refused() {
        assert!(matches!(
            Reader::new(&b"hello world, this is not a trace"[..]),
            Err(TraceError::NotATrace)
        ));
        assert!(matches!(
            Reader::new(&b"EBPF"[..]),
            Err(TraceError::NotATrace)
        ));
        let mut bytes = encode(&sample());
        bytes[8] = 9;
        assert!(matches!(
            Reader::new(bytes.as_slice()),
            Err(TraceError::Newer(9))
        ));
        let mut bytes = encode(&sample());
        bytes[24] = 99;
        let first = Reader::new(bytes.as_slice()).unwrap().next().unwrap();
        assert!(matches!(first, Err(TraceError::Corrupt(_))));
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for d in [0i64, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
    }
}
