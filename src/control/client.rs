//! A small blocking client for the control socket, used by `ebpfh top` and the subcommands.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Reply, Request, Response};
use super::server::socket_path;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no ebpfh monitor is running (no socket at {0}); start one with `sudo ebpfh --headless` or `sudo systemctl start ebpfh`")]
    NoMonitor(PathBuf),
    #[error("reaching the monitor's socket ({0}) needs root; run it with sudo")]
    NeedRoot(PathBuf),
    #[error("the monitor's socket at {path} does not answer ({source}); is the monitor stuck?")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the monitor sent something this ebpfh does not understand ({0}); did you forget to restart the monitor after an update?")]
    Protocol(String),
    #[error("refusing to talk to the {what} '{}': it belongs to uid {uid}, not root, so it is not an ebpfh monitor's; check who controls that directory", path.display())]
    NotRoots {
        what: &'static str,
        path: PathBuf,
        uid: u32,
    },
    /// The monitor refused; the text is its one-sentence reason.
    #[error("{0}")]
    Refused(String),
}

/// Connects to the monitor serving `run_dir`, after checking that the socket is root's: in a
/// directory another user controls, the "monitor" could be anyone's program.
pub fn connect(run_dir: &Path) -> Result<UnixStream, ClientError> {
    let path = socket_path(run_dir);
    let refused = |e: std::io::Error, path: PathBuf| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NoMonitor(path)
        }
        std::io::ErrorKind::PermissionDenied => ClientError::NeedRoot(path),
        _ => ClientError::Io { path, source: e },
    };
    for (what, p) in [("directory", run_dir), ("socket", path.as_path())] {
        let meta = std::fs::symlink_metadata(p).map_err(|e| refused(e, path.clone()))?;
        if meta.uid() != 0 || (what == "directory" && meta.mode() & 0o022 != 0) {
            return Err(ClientError::NotRoots {
                what,
                path: p.to_owned(),
                uid: meta.uid(),
            });
        }
    }
    let stream = UnixStream::connect(&path).map_err(|e| refused(e, path.clone()))?;
    // The socket file could still be swapped between the check and the connect; the peer's
    // credentials cannot.
    let server = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| ClientError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
    if server.uid() != 0 {
        return Err(ClientError::NotRoots {
            what: "server",
            path,
            uid: server.uid(),
        });
    }
    Ok(stream)
}

/// Whether a monitor answers on `run_dir`'s socket.
pub fn monitor_running(run_dir: &Path) -> bool {
    UnixStream::connect(socket_path(run_dir)).is_ok()
}

fn send(stream: &mut UnixStream, run_dir: &Path, req: &Request) -> Result<(), ClientError> {
    let io = |source| ClientError::Io {
        path: socket_path(run_dir),
        source,
    };
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)
}

fn read_reply(reader: &mut impl BufRead, run_dir: &Path) -> Result<Response, ClientError> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|source| ClientError::Io {
            path: socket_path(run_dir),
            source,
        })?;
    if line.is_empty() {
        return Err(ClientError::Protocol(
            "the monitor closed the connection without answering".into(),
        ));
    }
    let reply: Reply =
        serde_json::from_str(line.trim_end()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    reply.map_err(ClientError::Refused)
}

/// Sends one request and waits for its reply.
pub fn request(run_dir: &Path, req: &Request) -> Result<Response, ClientError> {
    let mut stream = connect(run_dir)?;
    let io = |source| ClientError::Io {
        path: socket_path(run_dir),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io)?;
    send(&mut stream, run_dir, req)?;
    read_reply(&mut BufReader::new(stream), run_dir)
}

/// Subscribes to the monitor's events; each item is one JSON line, parsed.
pub fn event_stream(
    run_dir: &Path,
) -> Result<impl Iterator<Item = serde_json::Value>, ClientError> {
    let mut stream = connect(run_dir)?;
    send(&mut stream, run_dir, &Request::EventStream)?;
    let mut reader = BufReader::new(stream);
    match read_reply(&mut reader, run_dir)? {
        Response::Streaming => {}
        other => {
            return Err(ClientError::Protocol(format!(
                "expected an event stream, got {other:?}"
            )))
        }
    }
    Ok(reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok()))
}
