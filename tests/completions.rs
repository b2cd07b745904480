//! Shell completions and the man page, generated from the clap definitions: they load in the
//! real shell and render with the real man.

use std::process::Command;

fn generate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(args)
        .output()
        .expect("the ebpfh binary runs");
    assert!(
        out.status.success(),
        "ebpfh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash's completion function offers for the words typed so far.
fn bash_complete(script: &std::path::Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let probe = format!(
        "source {script}\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _ebpfh ebpfh '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash could not load the completion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "bash complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ebpfh.bash");
    std::fs::write(&script, generate(&["completions", "bash"])).unwrap();
    assert_eq!(bash_complete(&script, "ebpfh sta"), ["status"]);
    let normal = bash_complete(&script, "ebpfh norm");
    assert_eq!(normal, ["normalize"]);
    let opts = bash_complete(&script, "ebpfh ps --thr");
    assert_eq!(opts, ["--threads"]);
    // Options of the default (monitor) command complete at the top level.
    assert_eq!(
        bash_complete(&script, "ebpfh --tolerize-l"),
        ["--tolerize-limit"]
    );
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    let zsh = generate(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef ebpfh"), "{}", &zsh[..40]);
    let fish = generate(&["completions", "fish"]);
    for sub in ["status", "normalize", "replay"] {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
}

#[test]
fn man_page_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("ebpfh.8");
    std::fs::write(&page, generate(&["man"])).unwrap();
    // groff with every warning enabled, output discarded: any complaint is on stderr.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff runs (apt-get install groff-base)");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs (apt-get install man-db)");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ebpfh(8)"), "{text}");
    assert!(text.contains("--anomaly-limit"), "{text}");
    assert!(text.contains("[default: 30]"), "{text}");
    assert!(text.contains("status"), "subcommands are listed: {text}");
}
