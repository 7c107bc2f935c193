//! `pinstack fetch`: each repo at its commit, detached; no network when already there; never a
//! silent reuse of a checkout of something else.

use crate::harness::{ALLOW_FILE_PROTOCOL, Fixture, Pin, Upstream, git, git_ok, numbered};

fn two_commits(fx: &Fixture, name: &str) -> (Upstream, String, String) {
    let up = fx.upstream(name);
    up.write("a.txt", numbered("a", 5))
        .write("bin/tool", "#!/bin/sh\n");
    up.chmod("bin/tool", 0o755);
    let first = up.commit("first");
    up.write("a.txt", numbered("a", 6));
    let second = up.commit("second");
    (up, first, second)
}

#[test]
fn fetch_checks_out_the_pin_detached() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    let v = fx.json(&["fetch"], 0);
    let checkout = fx.checkout("app");
    assert_eq!(v["repos"][0]["name"], "app");
    assert_eq!(v["repos"][0]["commit"], first.as_str());
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), first);
    assert!(
        !git_ok(&checkout, &["symbolic-ref", "-q", "HEAD"]),
        "HEAD must be detached"
    );
    assert_eq!(fx.worktree_tree(&checkout), up.tree(&first));
    assert_eq!(
        git(
            &checkout,
            &["status", "--porcelain", "--untracked-files=all"]
        ),
        ""
    );
    // The origin is the pinned URL.
    assert_eq!(git(&checkout, &["remote", "get-url", "origin"]), up.url());
}

#[test]
fn fetch_moves_a_checkout_to_a_new_pin() {
    let fx = Fixture::new();
    let (up, first, second) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack().arg("fetch").assert().code(0);
    fx.pins(&[Pin::new("app", &up, &second)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let checkout = fx.checkout("app");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), second);
    assert_eq!(fx.worktree_tree(&checkout), up.tree(&second));
}

#[test]
fn a_repo_at_its_pin_needs_no_network() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    let v = fx.json(&["fetch"], 0);
    assert!(!v["repos"][0]["fetched"].is_null());
    // The upstream is gone: any network use would fail.
    std::fs::rename(&up.path, fx.path("upstream/gone")).unwrap();
    let v = fx.json(&["fetch"], 0);
    assert!(v["repos"][0]["fetched"].is_null(), "{v:#}");
    let out = fx.stdout(&["fetch"], 0);
    assert!(out.contains("no network"), "{out}");
    // apply of a repo without bundles needs none either.
    fx.pinstack().arg("apply").assert().code(0);
}

#[test]
fn a_checkout_of_another_url_is_an_error() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let (other, other_first, _) = two_commits(&fx, "fork");
    fx.pins(&[Pin::new("app", &other, &other_first)]);
    let err = fx.stderr(&["fetch"], 2);
    assert!(err.contains("app"), "{err}");
    assert!(err.contains(&other.url()), "{err}");
    assert!(err.contains(&up.url()), "{err}");
    // The checkout is untouched.
    assert_eq!(git(&fx.checkout("app"), &["rev-parse", "HEAD"]), first);
}

#[test]
fn a_folder_that_is_not_a_checkout_is_an_error() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.write("workspace/src/app/notes.txt", "mine\n");
    fx.pins(&[Pin::new("app", &up, &first)]);
    let err = fx.stderr(&["fetch"], 2);
    assert!(
        err.contains("app") && err.contains("not a git checkout"),
        "{err}"
    );
    assert_eq!(fx.read("workspace/src/app/notes.txt"), b"mine\n");
}

#[test]
fn a_commit_missing_upstream_is_named() {
    let fx = Fixture::new();
    let (up, _, _) = two_commits(&fx, "app");
    let missing = "0123456789abcdef0123456789abcdef01234567";
    fx.pins(&[Pin::new("app", &up, missing)]);
    let out = fx
        .pinstack()
        .arg("fetch")
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(missing), "{err}");
    assert!(err.contains("app"), "{err}");
}

#[test]
fn an_unreachable_upstream_is_a_failed_step() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first).url(&fx.path("nowhere").display().to_string())]);
    let err = fx.stderr(&["fetch"], 3);
    assert!(err.contains("app"), "{err}");
}

#[test]
fn fetch_only_the_named_repos() {
    let fx = Fixture::new();
    let (a, a1, _) = two_commits(&fx, "a");
    let (b, b1, _) = two_commits(&fx, "b");
    fx.pins(&[Pin::new("a", &a, &a1), Pin::new("b", &b, &b1)]);
    fx.pinstack().args(["fetch", "b"]).assert().code(0);
    assert!(!fx.checkout("a").exists());
    assert_eq!(git(&fx.checkout("b"), &["rev-parse", "HEAD"]), b1);
    let err = fx.stderr(&["fetch", "c"], 2);
    assert!(err.contains("\"c\"") && err.contains("a, b"), "{err}");
}

#[test]
fn moving_a_dirty_checkout_is_refused() {
    let fx = Fixture::new();
    let (up, first, second) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("a.txt"), "my edit\n").unwrap();
    fx.pins(&[Pin::new("app", &up, &second)]);
    let err = fx.stderr(&["fetch"], 1);
    assert!(err.contains("a.txt"), "{err}");
    assert_eq!(std::fs::read(checkout.join("a.txt")).unwrap(), b"my edit\n");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), first);
}

#[test]
fn submodules_are_fetched_when_asked() {
    let fx = Fixture::new();
    let lib = fx.upstream("lib");
    lib.write("lib.h", "int lib;\n");
    let lib_commit = lib.commit("lib");
    let app = fx.upstream("app");
    app.write("main.c", "int main;\n");
    app.add_submodule(&lib, "deps/lib");
    let base = app.commit("with submodule");
    // A later lib commit is not what the pin records.
    lib.write("lib.h", "int lib2;\n");
    lib.commit("lib2");

    fx.pins(&[Pin::new("app", &app, &base)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let checkout = fx.checkout("app");
    assert!(
        !checkout.join("deps/lib/lib.h").exists(),
        "submodules: false"
    );

    let fx = Fixture::new();
    fx.pins(&[Pin::new("app", &app, &base).submodules()]);
    let v = fx
        .pinstack()
        .args(["fetch", "--json"])
        .envs(ALLOW_FILE_PROTOCOL.iter().copied())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
    assert_eq!(v["repos"][0]["submodules_updated"], true);
    let checkout = fx.checkout("app");
    assert_eq!(
        std::fs::read(checkout.join("deps/lib/lib.h")).unwrap(),
        b"int lib;\n"
    );
    assert_eq!(
        git(&checkout.join("deps/lib"), &["rev-parse", "HEAD"]),
        lib_commit
    );
    // Current submodules need no second update.
    let v = fx.json(&["fetch"], 0);
    assert_eq!(v["repos"][0]["submodules_updated"], false);
}

#[test]
fn dir_chooses_the_checkout_folder() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first).dir("engines/app-main")]);
    fx.pinstack().arg("fetch").assert().code(0);
    assert!(!fx.checkout("app").exists());
    let checkout = fx.checkout("engines/app-main");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), first);
    let v = fx.json(&["fetch"], 0);
    assert!(
        v["repos"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("src/engines/app-main")
    );
}

#[test]
fn workspace_option_moves_the_checkouts() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack()
        .args(["fetch", "--workspace", "elsewhere"])
        .assert()
        .code(0);
    assert!(!fx.path("workspace").exists());
    assert_eq!(
        git(&fx.path("elsewhere/src/app"), &["rev-parse", "HEAD"]),
        first
    );
}

/// pinstack killed at many moments during a fetch (while git fetches, while the checkout is
/// written): a plain rerun always converges to the pinned tree, detached, with nothing left over.
#[test]
fn a_fetch_killed_at_any_moment_converges_on_rerun() {
    let fx = Fixture::new();
    let up = fx.upstream("big");
    for c in 0..4 {
        for i in 0..300 {
            up.write(
                &format!("d{}/f{i}.txt", i % 17),
                numbered(&format!("{c}-{i}"), 20),
            );
        }
        up.commit(&format!("commit {c}"));
    }
    let pin = up.head();
    fx.pins(&[Pin::new("big", &up, &pin)]);
    let checkout = fx.checkout("big");
    let mut kills = 0;
    for round in 0..24u64 {
        let _ = std::fs::remove_dir_all(fx.path("workspace"));
        let mut child = fx
            .pinstack_std()
            .arg("fetch")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5 + round * 7));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        fx.pinstack().arg("fetch").assert().code(0);
        assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), pin, "round {round}");
        assert_eq!(
            git(&checkout, &["status", "--porcelain"]),
            "",
            "round {round}: nothing but the pinned tree"
        );
        assert_eq!(git(&checkout, &["rev-parse", "HEAD^{tree}"]), up.tree(&pin));
    }
    assert!(kills > 0, "at least one fetch was killed mid-way");
}

/// A repository with no commit yet that pinstack did not make (a person's `git init` with the
/// pinned origin): files where the pin has others are not overwritten; files the pin does not
/// have, or holds the same, do not stand in the way.
#[test]
fn a_repository_with_no_commit_keeps_a_persons_files() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("src/a.txt", "pinned\n").write("b.txt", "b\n");
    let pin = up.commit("pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    let co = fx.checkout("app");
    std::fs::create_dir_all(co.join("src")).unwrap();
    git(&co, &["init", "-q"]);
    git(&co, &["remote", "add", "origin", &up.url()]);
    std::fs::write(co.join("src/a.txt"), "MY OWN\n").unwrap();
    std::fs::write(co.join("notes.txt"), "mine too\n").unwrap();
    let err = fx.stderr(&["fetch"], 1);
    assert!(err.contains("src/a.txt"), "{err}");
    assert_eq!(std::fs::read(co.join("src/a.txt")).unwrap(), b"MY OWN\n");
    // Once the file is the pin's, the fetch goes ahead and keeps the rest.
    std::fs::write(co.join("src/a.txt"), "pinned\n").unwrap();
    fx.pinstack().arg("fetch").assert().code(0);
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), pin);
    assert_eq!(std::fs::read(co.join("notes.txt")).unwrap(), b"mine too\n");
    assert_eq!(std::fs::read(co.join("b.txt")).unwrap(), b"b\n");
}

/// A person's commit on the detached checkout is kept reachable when HEAD moves to the pin
/// (a plain apply does that after they committed what it refused); an earlier pin is not.
#[test]
fn a_commit_made_in_the_checkout_is_kept_when_head_moves_to_the_pin() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let pin = up.commit("pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let co = fx.checkout("app");
    std::fs::write(co.join("a.txt"), "my work\n").unwrap();
    git(
        &co,
        &[
            "-c",
            "user.name=me",
            "-c",
            "user.email=me@example.invalid",
            "commit",
            "-q",
            "-am",
            "my work",
        ],
    );
    let mine = git(&co, &["rev-parse", "HEAD"]);
    fx.pinstack().arg("apply").assert().code(0);
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), pin);
    let kept = || {
        git(
            &co,
            &[
                "for-each-ref",
                "--format=%(objectname)",
                "refs/pinstack/kept/",
            ],
        )
    };
    assert_eq!(kept(), mine);
    // Moving on to a new pin keeps nothing more: the old pin is no person's work.
    up.write("a.txt", "b\n");
    let next = up.commit("next pin");
    fx.pins(&[Pin::new("app", &up, &next)]);
    fx.pinstack().arg("fetch").assert().code(0);
    assert_eq!(kept(), mine);
}

/// When the pin moves to a commit that tracks a path the checkout holds as a file git ignores
/// (a local config under an ignored folder, say), the file is not overwritten: the move is
/// refused, naming it, with nothing written.
#[test]
fn a_moved_pin_does_not_overwrite_a_file_git_ignores() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n").write(".gitignore", "build/\n");
    let first = up.commit("first");
    up.write("build/config.py", "upstream\n");
    up.git(&["add", "-f", "build/config.py"]);
    up.git(&["commit", "-q", "-m", "tracks build/config.py"]);
    let second = up.head();
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let co = fx.checkout("app");
    std::fs::create_dir_all(co.join("build")).unwrap();
    std::fs::write(co.join("build/config.py"), "MY LOCAL CONFIG\n").unwrap();
    fx.pins(&[Pin::new("app", &up, &second)]);
    for command in ["fetch", "apply"] {
        let err = fx.stderr(&[command], 1);
        assert!(err.contains("build/config.py"), "{command}: {err}");
        assert_eq!(
            std::fs::read(co.join("build/config.py")).unwrap(),
            b"MY LOCAL CONFIG\n"
        );
        assert_eq!(git(&co, &["rev-parse", "HEAD"]), first);
    }
}

/// A person's own clone with full history, used as the checkout: fetching a new pin into it
/// keeps its history (a `--depth 1` fetch would make it shallow).
#[test]
fn a_full_clone_used_as_the_checkout_stays_full() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    for i in 0..3 {
        up.write("a.txt", format!("{i}\n"));
        up.commit(&format!("commit {i}"));
    }
    let co = fx.checkout("app");
    std::fs::create_dir_all(co.parent().unwrap()).unwrap();
    git(
        co.parent().unwrap(),
        &["clone", "-q", &up.url(), &co.display().to_string()],
    );
    up.write("a.txt", "pinned\n");
    let pin = up.commit("the pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    fx.pinstack().arg("fetch").assert().code(0);
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), pin);
    assert_eq!(git(&co, &["rev-parse", "--is-shallow-repository"]), "false");
    assert_eq!(git(&co, &["rev-list", "--count", "HEAD"]), "4");
}

/// The folder a checkout is made in before it is moved into place is removed when a killed
/// fetch left it (a repository and nothing else), never when it holds anything else.
#[test]
fn a_folder_named_like_the_staging_folder_is_not_removed() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let pin = up.commit("pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    let staging = fx.path("workspace/src/.app.pinstack-init");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("notes.txt"), "mine\n").unwrap();
    let err = fx.stderr(&["fetch"], 1);
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read(staging.join("notes.txt")).unwrap(), b"mine\n");
    std::fs::remove_file(staging.join("notes.txt")).unwrap();
    fx.pinstack().arg("fetch").assert().code(0);
    assert!(!staging.exists());
}

/// In a checkout that is not shallow (a server that serves no fetch by commit gives the whole
/// history), moving the pin forward and back keeps no ref: every commit HEAD left was a pin.
#[test]
fn moving_a_pin_in_a_full_checkout_keeps_nothing() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "1\n");
    let first = up.commit("first");
    up.write("a.txt", "2\n");
    let second = up.commit("second");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack().arg("fetch").assert().code(0);
    let co = fx.checkout("app");
    git(&co, &["fetch", "-q", "--unshallow", &up.url()]);
    for pin in [&second, &first, &second] {
        fx.pins(&[Pin::new("app", &up, pin)]);
        fx.pinstack().arg("fetch").assert().code(0);
        assert_eq!(git(&co, &["rev-parse", "HEAD"]), *pin);
    }
    assert_eq!(git(&co, &["for-each-ref", "refs/pinstack/kept/"]), "");
}

/// Every file of the checkout, byte for byte, as (path, bytes), the `.git` folder left out.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_fresh_checkout_writes_the_line_endings_a_nested_attributes_file_asks_for() {
    // pinstack skips libgit2's per-file attribute lookups where no attributes file exists;
    // one two folders down must still be found, and the bytes must be git's.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("top.txt", numbered("t", 3))
        .write("sub/deep/.gitattributes", "*.txt text eol=crlf\n")
        .write("sub/deep/x.txt", numbered("x", 3));
    let pin = up.commit("pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    fx.json(&["fetch"], 0);
    let co = fx.checkout("app");
    let written = std::fs::read(co.join("sub/deep/x.txt")).unwrap();
    assert_eq!(written, numbered("x", 3).replace('\n', "\r\n").into_bytes());
    assert_eq!(
        std::fs::read(co.join("top.txt")).unwrap(),
        numbered("t", 3).into_bytes()
    );
    // git's own checkout of the pin, byte for byte.
    let oracle = fx.path("oracle");
    git(
        fx.root(),
        &["clone", "-q", "--no-checkout", &up.url(), "oracle"],
    );
    git(&oracle, &["checkout", "-q", &pin]);
    assert_eq!(files(&co), files(&oracle));
    // And the tree is clean as pinned.
    fx.json(&["audit"], 0);
}

#[test]
fn a_fresh_checkout_honours_an_attributes_file_that_applies_everywhere() {
    // No attributes file in the tree, but the user's own (`$XDG_CONFIG_HOME/git/attributes`)
    // asks for CRLF: the checkout must go through the filter, as git's does.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", numbered("a", 3)).write("b.bin", "b\n");
    let pin = up.commit("pin");
    fx.pins(&[Pin::new("app", &up, &pin)]);
    let config = fx.path("home/.config");
    fx.write("home/.config/git/attributes", "*.txt text eol=crlf\n");
    fx.pinstack()
        .env("XDG_CONFIG_HOME", &config)
        .args(["fetch"])
        .assert()
        .code(0);
    let co = fx.checkout("app");
    assert_eq!(
        std::fs::read(co.join("a.txt")).unwrap(),
        numbered("a", 3).replace('\n', "\r\n").into_bytes()
    );
    assert_eq!(std::fs::read(co.join("b.bin")).unwrap(), b"b\n");
}

#[test]
fn lock_files_a_killed_fetch_left_in_the_checkout_it_was_making_are_removed() {
    let fx = Fixture::new();
    let (up, first, _) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    // Killed after writing the files, before HEAD moved; a kill inside libgit2's writes leaves
    // its lock files, as if it had been a moment later.
    fx.pinstack()
        .env("PINSTACK_FAULT", "fetch-checked-out:1")
        .arg("fetch")
        .assert()
        .failure();
    let co = fx.checkout("app");
    std::fs::write(co.join(".git/HEAD.lock"), "").unwrap();
    std::fs::write(co.join(".git/index.lock"), "").unwrap();
    fx.json(&["fetch"], 0);
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), first);
    assert_eq!(git(&co, &["status", "--porcelain"]), "");
    assert!(!co.join(".git/HEAD.lock").exists());
    assert!(!co.join(".git/index.lock").exists());
}

#[test]
fn a_lock_file_in_a_finished_checkout_is_refused_with_nothing_written() {
    let fx = Fixture::new();
    let (up, first, second) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.json(&["fetch"], 0);
    let co = fx.checkout("app");
    // A git command of the person's, running in the checkout (or killed), holds the index.
    std::fs::write(co.join(".git/index.lock"), "").unwrap();
    fx.pins(&[Pin::new("app", &up, &second)]);
    let err = fx.stderr(&["fetch"], 1);
    assert!(
        err.contains("index.lock") && err.contains("remove it"),
        "{err}"
    );
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), first);
    assert_eq!(
        std::fs::read(co.join("a.txt")).unwrap(),
        numbered("a", 5).as_bytes()
    );
    assert!(
        co.join(".git/index.lock").exists(),
        "a lock that may be live stays"
    );
    std::fs::remove_file(co.join(".git/index.lock")).unwrap();
    fx.json(&["fetch"], 0);
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), second);
}

#[test]
fn a_fetch_killed_after_its_checkout_leaves_no_marker_behind_the_next_one() {
    // The marker says "pinstack is still making this checkout" and lets a fetch remove lock
    // files: once the checkout is done, it must go, even when the fetch that made it was killed
    // just before taking it away.
    let fx = Fixture::new();
    let (up, first, second) = two_commits(&fx, "app");
    fx.pins(&[Pin::new("app", &up, &first)]);
    fx.pinstack()
        .env("PINSTACK_FAULT", "fetch-before-marker:1")
        .arg("fetch")
        .assert()
        .failure();
    let co = fx.checkout("app");
    assert!(
        co.join(".git/pinstack-new-checkout").exists(),
        "killed before it went"
    );
    fx.json(&["fetch"], 0);
    assert!(!co.join(".git/pinstack-new-checkout").exists());
    // A person's git at work in the finished checkout keeps its lock.
    std::fs::write(co.join(".git/index.lock"), "").unwrap();
    fx.pins(&[Pin::new("app", &up, &second)]);
    fx.stderr(&["fetch"], 1);
    assert!(co.join(".git/index.lock").exists());
}

#[test]
fn a_commit_made_in_a_submodule_is_kept_when_the_pin_moves_it() {
    let fx = Fixture::new();
    let lib = fx.upstream("lib");
    lib.write("lib.h", "int lib;\n");
    lib.commit("lib");
    let (app, first, lib2, second) = pins_moving_a_submodule(&fx, &lib);
    fx.pins(&[Pin::new("app", &app, &first).submodules()]);
    let fetch = || fetch_allowing_file_urls(&fx);
    fetch();
    // A person's commit on the submodule's detached HEAD.
    let sub = fx.checkout("app").join("deps/lib");
    let mine = commit_of_ones_own(&sub);
    fx.pins(&[Pin::new("app", &app, &second).submodules()]);
    fetch();
    assert_eq!(git(&sub, &["rev-parse", "HEAD"]), lib2);
    assert_eq!(
        git(&sub, &["rev-parse", &format!("refs/pinstack/kept/{mine}")]),
        mine,
        "the person's commit is kept reachable"
    );
}

#[test]
fn a_commit_made_in_a_nested_submodule_is_kept_too() {
    let fx = Fixture::new();
    let inner = fx.upstream("inner");
    inner.write("inner.h", "int inner;\n");
    inner.commit("inner");
    let lib = fx.upstream("lib");
    lib.write("lib.h", "int lib;\n");
    lib.add_submodule(&inner, "deps/inner");
    lib.commit("lib with inner");
    // The next pin moves lib (and so, recursively, what inner is at).
    let (app, first, _, second) = pins_moving_a_submodule(&fx, &lib);
    fx.pins(&[Pin::new("app", &app, &first).submodules()]);
    let fetch = || fetch_allowing_file_urls(&fx);
    fetch();
    // A person's commit two levels down, recorded in a commit of theirs one level down (as
    // one works on a nested submodule).
    let nested = fx.checkout("app").join("deps/lib/deps/inner");
    let mine = commit_of_ones_own(&nested);
    let middle = fx.checkout("app").join("deps/lib");
    git(&middle, &["add", "deps/inner"]);
    git(&middle, &["commit", "-q", "-m", "records mine"]);
    let recorded = git(&middle, &["rev-parse", "HEAD"]);
    fx.pins(&[Pin::new("app", &app, &second).submodules()]);
    fetch();
    assert_ne!(
        git(&nested, &["rev-parse", "HEAD"]),
        mine,
        "the update moved it"
    );
    let kept = |dir: &std::path::Path, id: &str| {
        git(dir, &["rev-parse", &format!("refs/pinstack/kept/{id}")])
    };
    assert_eq!(kept(&nested, &mine), mine);
    assert_eq!(kept(&middle, &recorded), recorded);
}

/// `pinstack fetch` with file:// submodule URLs allowed, asserting success.
fn fetch_allowing_file_urls(fx: &Fixture) {
    fx.pinstack()
        .args(["fetch"])
        .envs(ALLOW_FILE_PROTOCOL.iter().copied())
        .assert()
        .code(0);
}

/// A person's commit on the detached HEAD of the repository at `dir`; returns its id.
fn commit_of_ones_own(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("mine.h"), "int mine;\n").unwrap();
    git(dir, &["add", "mine.h"]);
    git(dir, &["commit", "-q", "-m", "mine"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// An upstream `app` with `lib` as the submodule `deps/lib`, and its two pins: `lib` at its
/// commit, then at a new one. Returns (app, first pin, lib's new commit, second pin).
fn pins_moving_a_submodule(fx: &Fixture, lib: &Upstream) -> (Upstream, String, String, String) {
    let app = fx.upstream("app");
    app.write("main.c", "int main;\n");
    app.add_submodule(lib, "deps/lib");
    let first = app.commit("with submodule");
    lib.write("lib.h", "int lib2;\n");
    let lib2 = lib.commit("lib2");
    let sub = app.path.join("deps/lib");
    git(&sub, &["fetch", "-q", "origin"]);
    git(&sub, &["checkout", "-q", &lib2]);
    let second = app.commit("lib2");
    (app, first, lib2, second)
}
