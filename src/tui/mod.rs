//! `ebpfh top`: the live dashboard.
//!
//! It is a client of the monitor's control socket. When no monitor answers on the run
//! directory, it starts one in-process first (same state directory and lock as `--headless`),
//! so `sudo ebpfh top` works on a fresh machine. Threads: a collector asks for a snapshot every
//! second and runs commands; a subscriber reads the event stream; the main thread reads keys,
//! applies them to [`App`] and draws. The terminal is restored on exit, on panic (a chained
//! panic hook) and on SIGINT, SIGTERM or SIGHUP.

pub mod app;
pub mod input;
pub mod ui;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::crossterm::{event, execute, terminal};
use ratatui::Terminal;

use crate::control::client;
use crate::control::protocol::{Request, Response, Target};
use crate::monitor;
use app::{App, Ask};

/// How often the dashboard asks for fresh numbers.
const REFRESH: Duration = Duration::from_secs(1);

/// Log lines of an in-process monitor, kept for the dashboard's message line instead of being
/// written over the screen. Cloneable; every clone shares the lines.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<VecDeque<String>>>);

impl LogBuffer {
    /// Takes the lines written since the last call.
    pub fn drain(&self) -> Vec<String> {
        match self.0.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut q) = self.0.lock() {
            for line in String::from_utf8_lossy(buf).lines() {
                if q.len() >= 1000 {
                    q.pop_front();
                }
                q.push_back(line.to_string());
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the background threads tell the main loop.
enum Msg {
    Snapshot(Box<crate::control::protocol::Snapshot>),
    Detail(Box<crate::control::protocol::ProfileDetail>),
    Event(Box<crate::jsonl::Line>),
    /// A command's result (ok, sentence).
    Result(bool, String),
}

/// Runs the dashboard until the user quits; hosts a monitor when none is running.
pub fn run(run_dir: &Path, mut opts: monitor::Options, logs: LogBuffer) -> Result<()> {
    let mut hosted = None;
    let source = if client::monitor_running(run_dir) {
        let pid = std::fs::read_to_string(run_dir.join(crate::control::server::PIDFILE))
            .unwrap_or_default();
        format!("monitor pid {}", pid.trim())
    } else {
        let stop = Arc::new(AtomicBool::new(false));
        opts.stop = Some(stop.clone());
        opts.run_dir = Some(run_dir.to_path_buf());
        let handle = std::thread::Builder::new()
            .name("monitor".into())
            .spawn(move || monitor::run(&opts))
            .context("cannot start the monitor thread")?;
        // Wait until it serves its socket, or report why it could not start.
        let end = Instant::now() + Duration::from_secs(120);
        while !client::monitor_running(run_dir) {
            if handle.is_finished() {
                return match handle.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(anyhow::anyhow!("the monitor stopped while starting")),
                };
            }
            if Instant::now() > end {
                anyhow::bail!("the monitor did not start within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        hosted = Some((stop, handle));
        "in-process monitor".to_string()
    };

    let result = dashboard(run_dir, source, &logs);

    if let Some((stop, handle)) = hosted {
        stop.store(true, Ordering::Relaxed);
        // The terminal may be gone (SIGHUP): never panic on a failed write to it.
        let mut err = io::stderr();
        let _ = writeln!(err, "ebpfh: stopping the monitor and saving profiles…");
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = writeln!(err, "ebpfh: the monitor failed: {e:#}");
            }
            Err(_) => {
                let _ = writeln!(err, "ebpfh: the monitor thread panicked");
            }
        }
        for line in logs.drain().iter().rev().take(3).rev() {
            let _ = writeln!(err, "{line}");
        }
    }
    result
}

/// Restores the terminal when dropped, and from the panic hook.
struct TerminalGuard;

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn dashboard(run_dir: &Path, source: String, logs: &LogBuffer) -> Result<()> {
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, quit.clone()).context("cannot handle signals")?;
    }
    // Chain the panic hook: put the terminal back, then let the previous hook report.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));

    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    let guard = TerminalGuard;
    execute!(io::stdout(), terminal::EnterAlternateScreen)
        .context("cannot switch to the terminal's alternate screen")?;
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))
        .context("cannot draw on this terminal")?;
    term.clear()?;

    let (msg_tx, msg_rx) = mpsc::channel();
    let (ask_tx, ask_rx) = mpsc::channel();
    spawn_collector(run_dir.to_path_buf(), ask_rx, msg_tx.clone());
    spawn_subscriber(run_dir.to_path_buf(), msg_tx, quit.clone());

    // Keys are read on their own thread: crossterm can spin inside a read once the terminal
    // is gone, and the main loop must still notice SIGHUP and quit.
    let (key_tx, key_rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("input".into())
        .spawn(move || loop {
            let ev = event::read();
            let failed = ev.is_err();
            if key_tx.send(ev).is_err() || failed {
                return;
            }
        });

    let mut app = App::new(source);
    let res = run_loop(&mut term, &mut app, &msg_rx, &ask_tx, &quit, logs, || {
        if terminal_hung_up() {
            quit.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        match key_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => ev.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                quit.store(true, Ordering::Relaxed);
                Ok(None)
            }
        }
    });
    // ratatui's Drop prints (and so panics) if it cannot show the cursor on a terminal that is
    // gone; the guard below restores what can be restored.
    if term.show_cursor().is_err() {
        std::mem::forget(term);
    } else {
        drop(term);
    }
    drop(guard);
    res
}

/// Whether standard input's terminal hung up (its window closed, its tmux server died).
fn terminal_hung_up() -> bool {
    let mut fds = [nix::libc::pollfd {
        fd: 0,
        events: nix::libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call; timeout 0.
    let n = unsafe { nix::libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & (nix::libc::POLLHUP | nix::libc::POLLERR | nix::libc::POLLNVAL) != 0
}

/// The main loop, generic over the backend and the key source so tests can drive it.
fn run_loop<B: Backend>(
    term: &mut Terminal<B>,
    app: &mut App,
    msgs: &Receiver<Msg>,
    asks: &Sender<Ask>,
    quit: &AtomicBool,
    logs: &LogBuffer,
    mut next_event: impl FnMut() -> io::Result<Option<event::Event>>,
) -> Result<()> {
    let mut dirty = true;
    while !app.quit && !quit.load(Ordering::Relaxed) {
        if dirty {
            term.draw(|f| ui::draw(f, app))?;
            dirty = false;
        }
        match next_event()? {
            Some(event::Event::Key(key)) => {
                if let Some(action) = input::action(&app.mode, key) {
                    app.message = None;
                    if let Some(ask) = app.apply(action) {
                        let _ = asks.send(ask);
                    }
                    dirty = true;
                }
            }
            Some(event::Event::Resize(..)) => dirty = true,
            _ => {}
        }
        while let Ok(msg) = msgs.try_recv() {
            dirty = true;
            match msg {
                Msg::Snapshot(s) => app.set_snapshot(*s),
                Msg::Detail(d) => app.set_detail(*d),
                Msg::Event(v) => app.push_event(&v),
                Msg::Result(ok, text) => app.set_message(ok, text),
            }
        }
        // An in-process monitor's problems show on the message line.
        if let Some(line) = logs
            .drain()
            .into_iter()
            .rev()
            .find(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        {
            if !line.contains("anomaly:") {
                app.set_message(false, line);
                dirty = true;
            }
        }
    }
    Ok(())
}

/// Asks for a snapshot every second (and the open profile's detail); runs commands.
fn spawn_collector(run_dir: PathBuf, asks: Receiver<Ask>, msgs: Sender<Msg>) {
    let _ = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            let mut detail: Option<String> = None;
            let mut next = Instant::now();
            loop {
                let ask = match asks.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Ok(a) => Some(a),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                let asked = ask.is_some();
                match ask {
                    Some(Ask::Command(op, target)) => {
                        let msg = match client::request(&run_dir, &Request::Command { op, target })
                        {
                            Ok(resp) => Msg::Result(
                                true,
                                crate::control::print::response(&resp, false)
                                    .trim()
                                    .to_string(),
                            ),
                            Err(e) => Msg::Result(false, e.to_string()),
                        };
                        if msgs.send(msg).is_err() {
                            return;
                        }
                    }
                    Some(Ask::Detail(d)) => detail = d,
                    Some(Ask::Refresh) | None => {}
                }
                if asked {
                    // Show the effect of a key at once.
                    next = Instant::now();
                }
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + REFRESH;
                let msg = match client::request(&run_dir, &Request::Snapshot { threads: false }) {
                    Ok(Response::Snapshot(s)) => Msg::Snapshot(s),
                    Ok(_) => continue,
                    Err(e) => Msg::Result(false, e.to_string()),
                };
                if msgs.send(msg).is_err() {
                    return;
                }
                if let Some(key) = &detail {
                    let req = Request::Profile {
                        target: Target::Profile(key.clone()),
                    };
                    let msg = match client::request(&run_dir, &req) {
                        Ok(Response::Profile(d)) => Msg::Detail(Box::new(d)),
                        Ok(_) => continue,
                        Err(e) => Msg::Result(false, e.to_string()),
                    };
                    if msgs.send(msg).is_err() {
                        return;
                    }
                }
            }
        });
}

/// Follows the monitor's event stream, reconnecting when it drops.
fn spawn_subscriber(run_dir: PathBuf, msgs: Sender<Msg>, quit: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            while !quit.load(Ordering::Relaxed) {
                if let Ok(events) = client::event_stream(&run_dir) {
                    // Lines of kinds this version does not know are skipped.
                    for line in events.filter_map(|v| serde_json::from_value(v).ok()) {
                        if msgs.send(Msg::Event(Box::new(line))).is_err() {
                            return;
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

    /// Drives the real loop with scripted keys (kmon's pattern): every view, then quit.
    #[test]
    fn scripted_keys_walk_every_view_and_quit() {
        let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
        let mut app = App::new("test");
        let (msg_tx, msg_rx) = mpsc::channel();
        let (ask_tx, ask_rx) = mpsc::channel();
        msg_tx.send(Msg::Snapshot(Box::default())).unwrap();
        let mut keys: VecDeque<KeyCode> = [
            KeyCode::Tab,
            KeyCode::Char('s'),
            KeyCode::Char('/'),
            KeyCode::Char('x'),
            KeyCode::Esc,
            KeyCode::Tab,
            KeyCode::Char('?'),
            KeyCode::Char('?'),
            KeyCode::Down,
            KeyCode::Enter,
            KeyCode::Char('q'),
        ]
        .into();
        let quit = AtomicBool::new(false);
        run_loop(
            &mut term,
            &mut app,
            &msg_rx,
            &ask_tx,
            &quit,
            &LogBuffer::default(),
            || {
                Ok(keys
                    .pop_front()
                    .map(|k| Event::Key(KeyEvent::new(k, KeyModifiers::NONE))))
            },
        )
        .unwrap();
        assert!(app.quit);
        assert!(keys.is_empty());
        assert!(app.loaded);
        assert!(
            ask_rx.try_recv().is_err(),
            "nothing to ask with no profiles"
        );
    }
}
