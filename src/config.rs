//! The configuration file: TOML whose keys are the long options of the command line, spelled
//! with `_` (`normal_wait = "10m"` is `--normal-wait 10m`).
//!
//! The key set, the types and the checks all come from the clap definitions: a file's values
//! become the options' defaults, so a flag on the command line still overrides them, and adding
//! a flag adds its key. Nothing here repeats a default.

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// Read when it exists and no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/ebpfh/ebpfh.toml";

/// The option that names the file; it is not a key itself.
pub const CONFIG_ARG: &str = "config";

/// One `key = value` of the file, checked against its option.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: String,
    line: usize,
    /// As the command line would spell them (several for a repeatable option).
    values: Vec<String>,
}

/// A configuration file that parsed and whose every key and value the options accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Origin::Flag => f.write_str("flag"),
        }
    }
}

/// The options that are configuration keys: every long option of `cmd` but help, version and
/// `--config` itself.
pub fn keys(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long().is_some()
            && a.get_id() != CONFIG_ARG
            && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads the file at `path` and checks it against the options of `cmd`: an unknown key, a
/// value of the wrong type or one the option refuses is one sentence naming the key and line.
pub fn load(path: &Path, cmd: &Command) -> Result<Layer, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the configuration file '{}': {e}",
            path.display()
        )
    })?;
    parse(path, &text, cmd)
}

/// [`load`] on text already read.
pub fn parse(path: &Path, text: &str, cmd: &Command) -> Result<Layer, String> {
    let at = |line: usize| format!("{}:{line}", path.display());
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        format!(
            "{}: {} (the file is TOML: key = value)",
            at(line),
            e.message().trim_end_matches('\n')
        )
    })?;
    let mut cmd = cmd.clone();
    cmd.build();
    let mut entries = Vec::new();
    for (key, value) in table.get_ref() {
        let line = line_of(text, key.span().start);
        let name = key.get_ref().as_ref();
        let Some(arg) = keys(&cmd).find(|a| a.get_id() == name) else {
            return Err(format!(
                "{}: unknown key '{name}'; the keys are the long options of `ebpfh --help`, \
                 written with _ (e.g. normal_wait)",
                at(line)
            ));
        };
        let values = strings(arg, value.get_ref())
            .map_err(|want| format!("{}: {name} must be {want}", at(line)))?;
        for v in &values {
            check(arg, v).map_err(|why| format!("{}: {name}: {why}", at(line)))?;
        }
        entries.push(Entry {
            key: name.to_string(),
            line,
            values,
        });
    }
    Ok(Layer {
        path: path.to_path_buf(),
        entries,
    })
}

/// A TOML value as the command line would spell it, or what type the option wants.
fn strings(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<String>, &'static str> {
    let scalar = |v: &DeValue<'_>| match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().replace('_', "")),
        _ => None,
    };
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            DeValue::Boolean(b) => Ok(vec![b.to_string()]),
            _ => Err("true or false"),
        },
        ArgAction::Append => match value {
            DeValue::Array(items) => items
                .iter()
                .map(|v| scalar(v.get_ref()))
                .collect::<Option<Vec<_>>>()
                .ok_or("a list of strings, like [\"/usr/sbin/sshd\"]"),
            v => scalar(v)
                .map(|s| vec![s])
                .ok_or("a list of strings, like [\"/usr/sbin/sshd\"]"),
        },
        _ => scalar(value).map(|s| vec![s]).ok_or("a string or a number"),
    }
}

/// Runs the option's own parser on `value`: the file is held to exactly the flag's rules.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(()); // already known to be a boolean
    }
    let long = arg.get_long().unwrap_or_default();
    let probe = Command::new("ebpfh")
        .no_binary_name(true)
        .arg(arg.clone().required(false).global(false));
    match probe.try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => {
            use std::error::Error;
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|p| p.get_name().to_string())
                .collect();
            Err(match e.source() {
                Some(why) if why.to_string().contains(value) => why.to_string(),
                Some(why) => format!("'{value}' is not valid: {why}"),
                None if !possible.is_empty() => {
                    format!("'{value}' is not one of {}", possible.join(", "))
                }
                None => format!("'{value}' is not a valid value"),
            })
        }
    }
}

impl Layer {
    /// `cmd` with the file's values as the defaults of the root's options and of the same
    /// options in `subcommands`.
    pub fn apply(&self, mut cmd: Command, subcommands: &[&str]) -> Command {
        for e in &self.entries {
            let values: Vec<clap::builder::OsStr> =
                e.values.iter().map(|v| v.clone().into()).collect();
            let set = |a: Arg| a.default_values(values.clone());
            cmd = cmd.mut_arg(&e.key, set);
            for &sub in subcommands {
                let has = cmd
                    .find_subcommand(sub)
                    .is_some_and(|s| s.get_arguments().any(|a| a.get_id() == e.key.as_str()));
                if has {
                    cmd = cmd.mut_subcommand(sub, |s| s.mut_arg(&e.key, set));
                }
            }
        }
        cmd
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The effective value of every key of `cmd` in `matches`, and where it came from, as TOML
/// lines that could serve as a configuration file. `cmd` is the command before [`Layer::apply`]
/// (which reorders options), `matches` what the applied one parsed.
pub fn explain(cmd: &Command, matches: &ArgMatches, layer: Option<&Layer>) -> String {
    let mut rows = Vec::new();
    for arg in keys(cmd) {
        let id = arg.get_id().as_str();
        let origin = match matches.value_source(id) {
            Some(clap::parser::ValueSource::CommandLine) => Origin::Flag,
            _ => match layer.and_then(|l| l.entry(id).map(|e| (l, e))) {
                Some((l, e)) => Origin::File {
                    path: l.path.clone(),
                    line: e.line,
                },
                None => Origin::Default,
            },
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let line = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let v = raw.first().map_or("false", String::as_str);
                format!("{id} = {v}")
            }
            ArgAction::Append => format!(
                "{id} = [{}]",
                raw.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
            ),
            _ => match raw.first() {
                Some(v) if v.parse::<i64>().is_ok() => format!("{id} = {v}"),
                Some(v) => format!("{id} = {}", quote(v)),
                None => format!("# {id} is not set"),
            },
        };
        rows.push((line, origin));
    }
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (line, origin) in rows {
        out.push_str(&format!("{line:width$}  # {origin}\n"));
    }
    out
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04X}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::value_parser;

    /// A command shaped like ebpfh's: a duration, a bounded number, a flag, a list, a choice.
    fn cmd() -> Command {
        Command::new("t")
            .arg(
                Arg::new("normal_wait")
                    .long("normal-wait")
                    .default_value("7d")
                    .value_parser(crate::settings::parse_duration),
            )
            .arg(
                Arg::new("max_rows")
                    .long("max-rows")
                    .default_value("65536")
                    .value_parser(value_parser!(u32).range(64..)),
            )
            .arg(
                Arg::new("respond")
                    .long("respond")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("allow").long("allow").action(ArgAction::Append))
            .arg(
                Arg::new("execve_response")
                    .long("execve-response")
                    .default_value("deny")
                    .value_parser(["deny", "kill"]),
            )
            .arg(Arg::new(CONFIG_ARG).long("config").global(true))
            .subcommand(
                Command::new("top").arg(
                    Arg::new("max_rows")
                        .long("max-rows")
                        .default_value("65536")
                        .value_parser(value_parser!(u32).range(64..)),
                ),
            )
    }

    fn layer(text: &str) -> Result<Layer, String> {
        parse(Path::new("/etc/e.toml"), text, &cmd())
    }

    #[test]
    fn values_become_defaults_that_flags_override() {
        let l = layer("# tuned\nnormal_wait = \"10m\"\nmax_rows = 1_024\nallow = [\"/a\", \"/b\"]\nrespond = true\n").unwrap();
        let m = l
            .apply(cmd(), &["top"])
            .try_get_matches_from(["t", "--max-rows", "128"])
            .unwrap();
        assert_eq!(
            m.get_one::<std::time::Duration>("normal_wait"),
            Some(&std::time::Duration::from_secs(600))
        );
        assert_eq!(m.get_one::<u32>("max_rows"), Some(&128));
        assert!(m.get_flag("respond"));
        let allow: Vec<&String> = m.get_many("allow").unwrap().collect();
        assert_eq!(allow, ["/a", "/b"]);
        let top = l
            .apply(cmd(), &["top"])
            .try_get_matches_from(["t", "top"])
            .unwrap();
        assert_eq!(
            top.subcommand_matches("top")
                .unwrap()
                .get_one::<u32>("max_rows"),
            Some(&1024)
        );
    }

    #[test]
    fn explain_names_each_values_origin() {
        let l = layer("\nnormal_wait = \"10m\"\n").unwrap();
        let m = l
            .apply(cmd(), &[])
            .try_get_matches_from(["t", "--max-rows", "128"])
            .unwrap();
        let text = explain(&cmd(), &m, Some(&l));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with("normal_wait = \"10m\"")
                && lines[0].ends_with("# file /etc/e.toml:2"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("max_rows = 128") && lines[1].ends_with("# flag"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("respond = false") && lines[2].ends_with("# default"),
            "{text}"
        );
        assert!(lines[3].starts_with("allow = []"), "{text}");
        assert!(lines[4].starts_with("execve_response = \"deny\""), "{text}");
        // What it prints is itself a configuration file the options accept.
        let toml: String = text.lines().map(|l| format!("{l}\n")).collect();
        layer(&toml).unwrap();
    }

    #[test]
    fn mistakes_are_one_sentence_with_key_and_line() {
        let e = layer("normal_wait = \"10m\"\n\nnormal_wiat = \"1d\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/e.toml:3: unknown key 'normal_wiat'"),
            "{e}"
        );
        let e = layer("max_rows = \"lots\"\n").unwrap_err();
        assert!(e.starts_with("/etc/e.toml:1: max_rows: "), "{e}");
        assert!(e.contains("lots"), "{e}");
        let e = layer("\nmax_rows = 8\n").unwrap_err();
        assert!(
            e.starts_with("/etc/e.toml:2: max_rows: 8 is not in 64.."),
            "{e}"
        );
        let e = layer("normal_wait = \"soon\"\n").unwrap_err();
        assert!(e.contains("'soon' is not a duration"), "{e}");
        let e = layer("respond = \"yes\"\n").unwrap_err();
        assert_eq!(e, "/etc/e.toml:1: respond must be true or false");
        let e = layer("max_rows = true\n").unwrap_err();
        assert_eq!(e, "/etc/e.toml:1: max_rows must be a string or a number");
        let e = layer("execve_response = \"maim\"\n").unwrap_err();
        assert_eq!(
            e,
            "/etc/e.toml:1: execve_response: 'maim' is not one of deny, kill"
        );
        let e = layer("config = \"/x\"\n").unwrap_err();
        assert!(e.contains("unknown key 'config'"), "{e}");
        let e = layer("a = 1\nnormal_wait = \n").unwrap_err();
        assert!(e.starts_with("/etc/e.toml:2: "), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
