//! Hashing executables on a worker thread, so that the monitor's event loop never reads one.
//!
//! Hashing a 60 MB binary takes a tenth of a second here and seconds on an emulated CPU; on the
//! event loop that was time in which the ring buffer filled and the control socket went
//! unanswered. The loop now only opens the file (non-blocking) and checks with `fstat` on the
//! opened descriptor that it is the profile's inode; the worker reads that same descriptor, so
//! what it hashes is that inode and no other, whatever happens to the path meanwhile. A file
//! whose mtime or size changed between the loop's check and the end of the read has no single
//! digest and gets none.
//!
//! At most [`QUEUE`] jobs wait (each holds its open files): a flood of new executables costs the
//! loop a bounded number of descriptors and the memory of that many jobs; the monitor keeps the
//! rest as a list of slots to hash later (see `src/monitor.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::identity::{Digest, Stamp};
use crate::profile::ProfileKey;

/// Jobs handed to the worker and not yet answered, at most.
pub const QUEUE: usize = 32;

/// How long a `profile_created` line waits for its executable's digest before it is written
/// with `sha256: null` (the digest still reaches `profiles --json` and the profile file).
pub const LINE_WAIT: Duration = Duration::from_secs(10);

/// How long a stopping monitor waits for the digests of the lines it still holds.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The worker thread's name, as `/proc/PID/task/TID/comm` shows it.
pub const THREAD_NAME: &str = "ebpfh-hash";

/// Bytes read at a time; between reads the worker notices that the monitor is stopping.
const CHUNK: usize = 1 << 20;

/// An executable opened for hashing: the open file is the inode `key` names.
#[derive(Debug)]
pub struct Opened {
    pub key: ProfileKey,
    file: File,
    stamp: Stamp,
}

/// Opens `path` for reading without blocking (see `identity::open`) and checks, on the opened
/// file, that it is a regular file; with `key`, also that it is that inode. Reads nothing.
pub fn open(path: &Path, key: Option<ProfileKey>) -> Option<Opened> {
    let file = crate::identity::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let found = ProfileKey::from_stat(meta.dev(), meta.ino());
    if !meta.is_file() || key.is_some_and(|k| k != found) {
        return None;
    }
    Some(Opened {
        key: found,
        file,
        stamp: Stamp::of(&meta),
    })
}

/// The first of `paths` that opens as the inode `key` (see [`open`]).
pub fn open_first(key: ProfileKey, paths: &[&Path]) -> Option<Opened> {
    paths.iter().find_map(|p| open(p, Some(key)))
}

/// What to hash for one profile slot.
#[derive(Debug)]
pub struct Job {
    pub slot: u32,
    pub exe: Opened,
    /// A script profile's script.
    pub script: Option<Opened>,
}

/// A job's answer: `exe` is `None` when the file changed while it was read (or could not be
/// read); `script` likewise, and always `None` for a job without a script.
#[derive(Debug)]
pub struct Done {
    pub slot: u32,
    pub exe: Option<Digest>,
    pub script: Option<Digest>,
}

/// The worker, its bounded queue of jobs and its answers.
pub struct Hasher {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Jobs sent and not yet answered.
    in_flight: usize,
}

impl Hasher {
    pub fn start() -> io::Result<Hasher> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (tx, done) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || work(&rx, &tx, &flag))?;
        Ok(Hasher {
            jobs: Some(jobs),
            done,
            stop,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    /// Whether a job can be sent now without passing [`QUEUE`].
    pub fn has_room(&self) -> bool {
        self.in_flight < QUEUE
    }

    /// Jobs sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands `job` to the worker; false (the job and its files dropped) when the queue is full.
    pub fn submit(&mut self, job: Job) -> bool {
        let sent = self.has_room() && self.jobs.as_ref().is_some_and(|j| j.try_send(job).is_ok());
        if sent {
            self.in_flight += 1;
        }
        sent
    }

    /// An answer, if one is ready; never waits.
    pub fn try_recv(&mut self) -> Option<Done> {
        self.take(
            self.done
                .try_recv()
                .map_err(|e| e == TryRecvError::Disconnected),
        )
    }

    /// An answer, waiting up to `limit` for one.
    pub fn recv_timeout(&mut self, limit: Duration) -> Option<Done> {
        let got = self.done.recv_timeout(limit);
        self.take(got.map_err(|e| e == mpsc::RecvTimeoutError::Disconnected))
    }

    fn take(&mut self, got: Result<Done, bool>) -> Option<Done> {
        match got {
            Ok(d) => {
                self.in_flight -= 1;
                Some(d)
            }
            // The worker is gone (it panicked): nothing sent will be answered.
            Err(true) => {
                self.in_flight = 0;
                None
            }
            Err(false) => None,
        }
    }
}

impl Drop for Hasher {
    /// Stops the worker within one [`CHUNK`] of its current read, dropping the jobs still queued.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The worker's loop: one job at a time, in the order sent. The cache by inode and stamp saves
/// hashing an interpreter again for each of its script profiles.
fn work(jobs: &Receiver<Job>, done: &mpsc::Sender<Done>, stop: &AtomicBool) {
    let mut known: HashMap<ProfileKey, (Stamp, Digest)> = HashMap::new();
    let mut buf = vec![0u8; CHUNK];
    while let Ok(job) = jobs.recv() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let exe = match known.get(&job.exe.key) {
            Some((s, d)) if *s == job.exe.stamp && unchanged(&job.exe) => Some(*d),
            _ => {
                let d = digest(job.exe, &mut buf, stop);
                if let Some((key, stamp, d)) = d {
                    known.insert(key, (stamp, d));
                }
                d.map(|(_, _, d)| d)
            }
        };
        let script = job
            .script
            .and_then(|s| digest(s, &mut buf, stop))
            .map(|(_, _, d)| d);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let answer = Done {
            slot: job.slot,
            exe,
            script,
        };
        if done.send(answer).is_err() {
            return;
        }
    }
}

/// Whether the file still has the stamp it had when it was opened.
fn unchanged(o: &Opened) -> bool {
    o.file.metadata().is_ok_and(|m| Stamp::of(&m) == o.stamp)
}

/// The digest of an opened file, if it was the same before and after the read as when it was
/// opened.
fn digest(mut o: Opened, buf: &mut [u8], stop: &AtomicBool) -> Option<(ProfileKey, Stamp, Digest)> {
    if !unchanged(&o) {
        return None;
    }
    let mut h = Sha256::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match o.file.read(buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    if !unchanged(&o) {
        return None;
    }
    Some((o.key, o.stamp, Digest(h.finalize().into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wait(h: &mut Hasher) -> Done {
        h.recv_timeout(Duration::from_secs(60))
            .expect("the worker answers")
    }

    #[test]
    fn the_worker_hashes_the_opened_inode_even_after_its_path_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"first contents").unwrap();
        let opened = open(&path, None).unwrap();
        let key = opened.key;
        // The path now names another file; the job still holds the first.
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        std::fs::write(&path, b"impostor").unwrap();
        assert!(open(&path, Some(key)).is_none(), "another inode is refused");
        let mut h = Hasher::start().unwrap();
        assert!(h.submit(Job {
            slot: 7,
            exe: opened,
            script: open(&path, None),
        }));
        assert_eq!(h.in_flight(), 1);
        let d = wait(&mut h);
        assert_eq!(d.slot, 7);
        assert_eq!(d.exe, Some(Digest::of(b"first contents")));
        assert_eq!(d.script, Some(Digest::of(b"impostor")));
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn a_file_changed_after_it_was_opened_gets_no_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"contents").unwrap();
        let opened = open(&path, None).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" grown").unwrap();
        drop(f);
        let mut h = Hasher::start().unwrap();
        assert!(h.submit(Job {
            slot: 1,
            exe: opened,
            script: None,
        }));
        assert_eq!(wait(&mut h).exe, None);
        // Opened again, it is hashed as it is now.
        assert!(h.submit(Job {
            slot: 1,
            exe: open(&path, None).unwrap(),
            script: None,
        }));
        assert_eq!(wait(&mut h).exe, Some(Digest::of(b"contents grown")));
    }

    #[test]
    fn fifos_and_directories_are_not_opened_for_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(open(&fifo, None).is_none());
        assert!(open(dir.path(), None).is_none());
        assert!(open(&dir.path().join("missing"), None).is_none());
    }
}
