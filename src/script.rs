//! Script profiles: which executables are interpreters, and how each family's command line says
//! whether it runs a script file.
//!
//! The kernel gives an interpreter running a script file a profile of its own, keyed by
//! (interpreter, script), so a new script is a new profile in training rather than anomalies of
//! bash. The rule, applied at exec (`script_of` in `bpf/ebpfh.bpf.c`):
//!
//! - An exec through `#!` (`./x.sh`) is always a script exec: the script is the file exec'd.
//! - An exec of a known interpreter (by file name, version suffix removed: `python3.12` is
//!   `python`; a copy of bash in `~/bin` is still `bash`) runs a script if its command line has
//!   one: the first argument that is neither an option nor an option's value. An option that
//!   puts the program on the command line or stdin (`-c`, `-e`, `-m`, `-s`, `-i`, `-`) means it
//!   runs none, and so does a command line without arguments (an interactive shell).
//! - Everything else keeps the executable's own profile.
//!
//! This table says, per interpreter family, which option letters are of which kind.

use std::fmt;

/// How one interpreter family reads its options (`struct interp_rule` in `bpf/ebpfh.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Letters after which there is no script: the program is on the command line or stdin.
    pub code: &'static str,
    /// Letters that take a value: the rest of the bundle, or else the next argument.
    pub value: &'static str,
    /// Letters that take the rest of the bundle (if any) and never the next argument.
    pub attached: &'static str,
    /// `+` starts options too (`bash +o posix`).
    pub plus: bool,
}

const SHELL: Rule = Rule {
    code: "cis",
    value: "oO",
    attached: "",
    plus: true,
};
const PYTHON: Rule = Rule {
    code: "cm",
    value: "WX",
    attached: "",
    plus: false,
};
const PERL: Rule = Rule {
    code: "eE",
    value: "I",
    attached: "iMmdDxCF",
    plus: false,
};
const RUBY: Rule = Rule {
    code: "e",
    value: "IrCE",
    attached: "xTKW",
    plus: false,
};
const NODE: Rule = Rule {
    code: "epi",
    value: "r",
    attached: "",
    plus: false,
};
const PHP: Rule = Rule {
    code: "ra",
    value: "dcz",
    attached: "",
    plus: false,
};
const LUA: Rule = Rule {
    code: "e",
    value: "l",
    attached: "",
    plus: false,
};
/// For interpreters this table does not know: `-c` and `-e` give code, nothing takes a value.
const GENERIC: Rule = Rule {
    code: "ce",
    value: "",
    attached: "",
    plus: false,
};

/// Known families: the name the kernel matches (version suffix removed) and its rule.
const FAMILIES: &[(&str, Rule)] = &[
    ("sh", SHELL),
    ("ash", SHELL),
    ("bash", SHELL),
    ("dash", SHELL),
    ("ksh", SHELL),
    ("mksh", SHELL),
    ("yash", SHELL),
    ("zsh", SHELL),
    ("python", PYTHON),
    ("pypy", PYTHON),
    ("perl", PERL),
    ("ruby", RUBY),
    ("node", NODE),
    ("nodejs", NODE),
    ("php", PHP),
    ("lua", LUA),
    ("luajit", LUA),
    ("tclsh", GENERIC),
    ("wish", GENERIC),
];

/// The interpreters the monitor gives the kernel unless `--interpreters` says otherwise.
pub const DEFAULT_INTERPRETERS: &str =
    "sh,ash,bash,dash,ksh,mksh,yash,zsh,python,pypy,perl,ruby,node,nodejs,php,lua,luajit,tclsh,wish";

/// Longest family name the kernel can match (`INTERP_NAME - 1`).
pub const MAX_NAME: usize = 15;

/// One interpreter the kernel recognises by file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    pub name: String,
    pub rule: Rule,
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A parsed `--interpreters` value (one argument holding the whole list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpreterList(pub Vec<Interpreter>);

impl InterpreterList {
    pub fn parse(list: &str) -> Result<Self, String> {
        parse_interpreters(list).map(InterpreterList)
    }
}

/// Removes a version suffix as the kernel does: `python3.12` -> `python`.
pub fn family_name(file_name: &str) -> &str {
    file_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
}

/// Parses `--interpreters`: comma-separated names, each `NAME` (a known family, or an unknown
/// interpreter read like `-c`/`-e` give code) or `NAME=FAMILY` (read like that family).
pub fn parse_interpreters(list: &str) -> Result<Vec<Interpreter>, String> {
    let mut out: Vec<Interpreter> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, like) = match item.split_once('=') {
            Some((name, like)) => (name.trim(), Some(like.trim())),
            None => (item, None),
        };
        if name.is_empty()
            || name.len() > MAX_NAME
            || family_name(name) != name
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        {
            return Err(format!(
                "'{name}' cannot name an interpreter: write a file name of at most {MAX_NAME} \
                 characters without its version (python, not python3.12)"
            ));
        }
        let rule = match like {
            Some(like) => lookup(like).ok_or_else(|| {
                format!("'{like}' is not an interpreter family ebpfh knows; known: {DEFAULT_INTERPRETERS}")
            })?,
            None => lookup(name).unwrap_or(GENERIC),
        };
        out.retain(|i| i.name != name);
        out.push(Interpreter {
            name: name.to_string(),
            rule,
        });
    }
    Ok(out)
}

fn lookup(name: &str) -> Option<Rule> {
    FAMILIES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The default set.
pub fn default_interpreters() -> Vec<Interpreter> {
    parse_interpreters(DEFAULT_INTERPRETERS).expect("the default list parses")
}

/// The kernel's bit for an option letter (`letter_bit` in `bpf/ebpfh.bpf.c`).
pub fn letter_bit(c: u8) -> u64 {
    match c {
        b'a'..=b'z' => 1 << (c - b'a'),
        b'A'..=b'Z' => 1 << (c - b'A' + 26),
        b'0'..=b'9' => 1 << (c - b'0' + 52),
        _ => 0,
    }
}

/// The bits of a set of letters.
pub fn letters(s: &str) -> u64 {
    s.bytes().map(letter_bit).fold(0, |a, b| a | b)
}

/// Where the script is in an interpreter's argv (argv[0] included), by the kernel's rule; `None`
/// if it runs none. The kernel's scan (`argscan_arg`) does the same on the raw argv bytes; this
/// version is for tests and documentation.
pub fn script_arg(rule: &Rule, argv: &[&str]) -> Option<usize> {
    let (code, value, attached) = (
        letters(rule.code),
        letters(rule.value),
        letters(rule.attached),
    );
    let mut skip = false;
    let mut end_opts = false;
    for (i, arg) in argv.iter().enumerate().skip(1) {
        let b = arg.as_bytes();
        if skip {
            skip = false;
            continue;
        }
        if b.is_empty() {
            return None;
        }
        if end_opts || !(b[0] == b'-' || (b[0] == b'+' && rule.plus)) {
            return Some(i);
        }
        match b.get(1) {
            None => return None,
            Some(b'-') if b[0] == b'-' => {
                end_opts = b.len() == 2;
                continue;
            }
            _ => {}
        }
        for (j, &c) in b.iter().enumerate().take(8).skip(1) {
            let bit = letter_bit(c);
            if bit & code != 0 {
                return None;
            }
            if bit & value != 0 {
                skip = j + 1 == b.len();
                break;
            }
            if bit & attached != 0 {
                break;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, argv: &[&str]) -> Option<usize> {
        script_arg(&lookup(family_name(name)).unwrap(), argv)
    }

    #[test]
    fn version_suffixes_are_removed() {
        assert_eq!(family_name("python3.12"), "python");
        assert_eq!(family_name("perl5.36.0"), "perl");
        assert_eq!(family_name("bash"), "bash");
        assert_eq!(family_name("ksh93"), "ksh");
    }

    #[test]
    fn shells_run_scripts_but_not_commands_or_stdin() {
        assert_eq!(script("bash", &["bash", "x.sh", "a"]), Some(1));
        assert_eq!(
            script("bash", &["bash", "-e", "-o", "pipefail", "x.sh"]),
            Some(4)
        );
        assert_eq!(script("bash", &["bash", "+o", "posix", "./x.sh"]), Some(3));
        assert_eq!(script("bash", &["bash", "-c", "echo hi", "x.sh"]), None);
        assert_eq!(script("sh", &["sh", "-ec", "true"]), None);
        assert_eq!(script("bash", &["bash", "-s", "x"]), None);
        assert_eq!(script("bash", &["bash"]), None);
        assert_eq!(script("bash", &["bash", "-i"]), None);
        assert_eq!(script("bash", &["bash", "--", "-x.sh"]), Some(2));
        assert_eq!(script("dash", &["dash", "-"]), None);
        assert_eq!(script("bash", &["bash", "--norc", "x.sh"]), Some(2));
    }

    #[test]
    fn python_perl_and_others_follow_their_own_options() {
        assert_eq!(script("python3", &["python3", "y.py"]), Some(1));
        assert_eq!(
            script("python3.12", &["python3", "-u", "-W", "ignore", "y.py"]),
            Some(4)
        );
        assert_eq!(script("python3", &["python3", "-Wignore", "y.py"]), Some(2));
        assert_eq!(script("python3", &["python3", "-c", "print(1)"]), None);
        assert_eq!(script("python3", &["python3", "-m", "http.server"]), None);
        assert_eq!(script("python3", &["python3", "-Bc", "1"]), None);
        assert_eq!(script("perl", &["perl", "x.pl"]), Some(1));
        assert_eq!(script("perl", &["perl", "-e", "print 1"]), None);
        assert_eq!(script("perl", &["perl", "-lne", "print", "f"]), None);
        assert_eq!(script("perl", &["perl", "-I", "lib", "x.pl"]), Some(3));
        assert_eq!(script("perl", &["perl", "-i.bak", "-p", "x.pl"]), Some(3));
        assert_eq!(script("ruby", &["ruby", "-r", "json", "x.rb"]), Some(3));
        assert_eq!(script("node", &["node", "-e", "1"]), None);
        assert_eq!(script("node", &["node", "app.js"]), Some(1));
        assert_eq!(script("php", &["php", "-r", "echo 1;"]), None);
        assert_eq!(script("php", &["php", "-f", "x.php"]), Some(2));
        assert_eq!(script("lua5.4", &["lua", "-l", "m", "x.lua"]), Some(3));
    }

    #[test]
    fn the_list_parses_names_and_likenesses() {
        let list = parse_interpreters("bash, mysh=bash,awkish").unwrap();
        assert_eq!(list[0].rule, SHELL);
        assert_eq!((list[1].name.as_str(), list[1].rule), ("mysh", SHELL));
        assert_eq!(list[2].rule, GENERIC);
        assert_eq!(default_interpreters().len(), FAMILIES.len());
        for bad in ["python3", "a/b", "averyveryverylongname", "x=nosuchfamily"] {
            let err = parse_interpreters(bad).unwrap_err();
            assert!(err.contains('\''), "{bad}: {err}");
        }
    }

    #[test]
    fn letter_bits_match_the_kernel_layout() {
        assert_eq!(letter_bit(b'a'), 1);
        assert_eq!(letter_bit(b'Z'), 1 << 51);
        assert_eq!(letter_bit(b'9'), 1 << 61);
        assert_eq!(letter_bit(b'-'), 0);
        assert_eq!(
            letters("cis"),
            letter_bit(b'c') | letter_bit(b'i') | letter_bit(b's')
        );
    }
}
