//! A small blocking client for the control socket, used by `ebpfh top` and the subcommands.

use std::io::{BufRead, BufReader, Write};
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
    /// The monitor refused; the text is its one-sentence reason.
    #[error("{0}")]
    Refused(String),
}

/// Connects to the monitor serving `run_dir`.
pub fn connect(run_dir: &Path) -> Result<UnixStream, ClientError> {
    let path = socket_path(run_dir);
    match UnixStream::connect(&path) {
        Ok(s) => Ok(s),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NoMonitor(path)
            }
            std::io::ErrorKind::PermissionDenied => ClientError::NeedRoot(path),
            _ => ClientError::Io { path, source: e },
        }),
    }
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
