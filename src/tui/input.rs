//! Keys to actions, per mode (bpftop's keys: arrows or j/k, `s` sort, `/` filter, `q` quit).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, Mode};
use crate::control::protocol::Op;

/// The action for `key` in `mode`, if the key means anything there.
pub fn action(mode: &Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match mode {
        Mode::Filter => match key.code {
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Enter | KeyCode::Down | KeyCode::Up => Some(Action::FilterDone),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            _ => None,
        },
        Mode::Confirm { .. } => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Some(Action::Confirm),
            _ => Some(Action::Cancel),
        },
        Mode::Help => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            _ => Some(Action::Help),
        },
        Mode::Normal => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(Action::PageDown),
            KeyCode::Home | KeyCode::Char('g') => Some(Action::First),
            KeyCode::End | KeyCode::Char('G') => Some(Action::Last),
            KeyCode::Tab | KeyCode::BackTab => Some(Action::SwitchView),
            KeyCode::Enter => Some(Action::Open),
            KeyCode::Char('s') => Some(Action::Sort),
            KeyCode::Char('/') => Some(Action::StartFilter),
            KeyCode::Char('f') => Some(Action::Command(Op::Freeze)),
            KeyCode::Char('n') => Some(Action::Command(Op::Normalize)),
            KeyCode::Char('z') => Some(Action::Command(Op::Sensitize)),
            KeyCode::Char('t') => Some(Action::Command(Op::Tolerize)),
            KeyCode::Char('r') => Some(Action::Command(Op::Reset)),
            KeyCode::Char('a') => Some(Action::Command(Op::Accept)),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::Help),
            _ => None,
        },
    }
}

/// The help screen's lines: key, then what it does.
pub const HELP: [(&str, &str); 18] = [
    ("↑ ↓  j k", "move"),
    ("PgUp PgDn g G", "page, first, last"),
    ("Tab", "profiles ⇄ processes"),
    ("Enter", "profile detail and its lookahead pairs"),
    ("s", "sort by the next column"),
    ("/", "new filter (Enter keeps it, Esc clears it)"),
    ("f", "freeze: normal after normal_wait"),
    ("n", "normalize: start detecting now (asks first)"),
    ("z", "sensitize: forget training data (asks first)"),
    ("t", "tolerize: back to training (asks first)"),
    ("r", "reset: forget everything (asks first)"),
    (
        "a",
        "accept: what it learned while normal is normal (asks first)",
    ),
    ("?", "this help"),
    ("Esc", "back; quits from the main views"),
    ("q  Ctrl-C", "quit"),
    ("", ""),
    ("feed", "newest first; times are UTC"),
    ("LFC", "anomalies among a task's last 128 calls"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_per_mode() {
        let n = Mode::Normal;
        assert_eq!(action(&n, key(KeyCode::Char('j'))), Some(Action::Down));
        assert_eq!(
            action(&n, key(KeyCode::Char('n'))),
            Some(Action::Command(Op::Normalize))
        );
        assert_eq!(action(&n, key(KeyCode::Char('x'))), None);
        let f = Mode::Filter;
        assert_eq!(
            action(&f, key(KeyCode::Char('q'))),
            Some(Action::FilterChar('q'))
        );
        let c = Mode::Confirm {
            op: Op::Reset,
            key: "1:1".into(),
            name: "x".into(),
        };
        assert_eq!(action(&c, key(KeyCode::Char('y'))), Some(Action::Confirm));
        assert_eq!(action(&c, key(KeyCode::Char('n'))), Some(Action::Cancel));
        assert_eq!(
            action(&n, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }
}
