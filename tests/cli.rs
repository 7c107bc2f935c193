//! The command line as a whole: the exit-code table, usage errors, a closed pipe.

use crate::harness::{Fixture, Pin, numbered};

const TABLE: [&str; 6] = [
    "Exit codes:",
    "0    success",
    "1    checked and found not as pinned",
    "2    usage or invalid input",
    "3    a step or external command failed",
    "130  interrupted",
];

#[test]
fn help_shows_the_exit_code_table() {
    let fx = Fixture::new();
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["apply", "--help"],
        vec!["fetch", "--help"],
        vec!["lock", "--help"],
    ] {
        let out = fx.stdout(&args, 0);
        for line in TABLE {
            assert!(
                out.contains(line),
                "`pinstack {args:?}` lacks {line:?}:\n{out}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fixture::new();
    fx.pinstack().assert().code(2);
    fx.pinstack().arg("no-such-command").assert().code(2);
    fx.pinstack()
        .args(["check", "--no-such-flag"])
        .assert()
        .code(2);
    fx.pinstack().args(["bundle", "pack"]).assert().code(2);
    let err = fx.stderr(&["bundle", "unpack", "missing.b64"], 2);
    assert!(err.contains("missing.b64"), "{err}");
}

#[test]
fn unknown_repos_exit_2_for_every_command() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a", "a\n");
    let c = up.commit("a");
    fx.pins(&[Pin::new("app", &up, &c)]);
    for cmd in ["fetch", "apply", "check"] {
        let err = fx.stderr(&[cmd, "ghost"], 2);
        assert!(err.contains("ghost") && err.contains("app"), "{cmd}: {err}");
    }
    assert!(!fx.path("workspace").exists());
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("big.txt", numbered("a fairly long line of text", 20000));
    let base = up.commit("base");
    up.write(
        "big.txt",
        numbered("another fairly long line of text", 20000),
    );
    let tip = up.commit("tip");
    let b = fx.bundle("big", &up.diff(&base, &tip));
    let bin = assert_cmd::cargo::cargo_bin("pinstack");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; '{}' bundle unpack '{}' | head -c 10 >/dev/null",
                bin.display(),
                b.path
            ),
        ])
        .current_dir(fx.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
