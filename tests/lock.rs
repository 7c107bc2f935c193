//! `pinstack lock`: records pin + bundles as `tree:` without disturbing the rest of pins.yaml;
//! afterwards `check` passes and `apply` verifies the lock.

use crate::harness::{Fixture, Upstream, numbered, snapshot};

struct Locked {
    fx: Fixture,
    app: Upstream,
    app_base: String,
    diff: Vec<u8>,
    lib: Upstream,
    lib_base: String,
    text: String,
}

/// Two repos, one with a bundle, in a hand-written pins.yaml full of comments.
fn setup() -> Locked {
    let fx = Fixture::new();
    let app = fx.upstream("app");
    app.write("engine.py", numbered("engine", 10));
    let app_base = app.commit("base");
    app.write(
        "engine.py",
        numbered("engine", 10).replace("engine 3\n", "engine 3 xpu\n"),
    );
    let tip = app.commit("tip");
    let diff = app.diff(&app_base, &tip);
    let b = fx.bundle("engine", &diff);
    let lib = fx.upstream("lib");
    lib.write("lib.c", "int x;\n");
    let lib_base = lib.commit("lib");
    let text = format!(
        "# Production pins. Comments stay.\n\
         repos:\n\
         \x20 # the engine\n\
         \x20 app:\n\
         \x20   url: {}   # upstream\n\
         \x20   commit: {app_base}\n\
         \x20   patches:\n\
         \x20     # xpu fix\n\
         \x20     - bundle: {}\n\
         \x20       sha256: {}\n\
         \x20       diff_sha256: {}\n\
         \n\
         \x20 lib:\n\
         \x20   url: {}\n\
         \x20   commit: {lib_base}  # no bundles\n\
         # end of file\n",
        app.url(),
        b.path,
        b.sha256,
        b.diff_sha256,
        lib.url(),
    );
    fx.write("pins.yaml", &text);
    Locked {
        fx,
        app,
        app_base,
        diff,
        lib,
        lib_base,
        text,
    }
}

fn pins_text(fx: &Fixture) -> String {
    String::from_utf8(fx.read("pins.yaml")).unwrap()
}

#[test]
fn lock_records_the_trees_and_keeps_the_file() {
    let s = setup();
    let v = s.fx.json(&["lock"], 0);
    assert_eq!(v["written"], true);
    let app_tree = s.fx.oracle_tree(&s.app, &s.app_base, &[(&s.diff, None)]);
    let lib_tree = s.lib.tree(&s.lib_base);
    let after = pins_text(&s.fx);
    let expected = s
        .text
        .replacen(
            "\n\n  lib:",
            &format!("\n    tree: {app_tree}\n\n  lib:"),
            1,
        )
        .replacen(
            "  # no bundles\n",
            &format!("  # no bundles\n    tree: {lib_tree}\n"),
            1,
        );
    assert_eq!(after, expected, "lock changed more than the tree lines");

    // Afterwards check passes with the lock, and apply verifies it.
    let v = s.fx.json(&["check"], 0);
    assert_eq!(v["repos"][0]["locked_tree"], app_tree.as_str());
    assert_eq!(v["repos"][0]["tree_matches_lock"], true);
    assert_eq!(v["repos"][1]["tree_matches_lock"], true);
    let v = s.fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["tree"], app_tree.as_str());
    assert_eq!(s.fx.worktree_tree(&s.fx.checkout("app")), app_tree);

    // Locking again changes nothing.
    let v = s.fx.json(&["lock"], 0);
    assert_eq!(v["written"], false);
    assert_eq!(pins_text(&s.fx), after);
}

#[test]
fn lock_replaces_a_stale_tree_in_place() {
    let s = setup();
    s.fx.pinstack().arg("lock").assert().code(0);
    let locked = pins_text(&s.fx);
    let app_tree = s.fx.oracle_tree(&s.app, &s.app_base, &[(&s.diff, None)]);
    let stale = "1".repeat(40);
    let edited = locked.replace(
        &format!("    tree: {app_tree}\n"),
        &format!("    tree: {stale}   # locked by hand\n"),
    );
    assert_ne!(edited, locked);
    s.fx.write("pins.yaml", &edited);
    let v = s.fx.json(&["check"], 1);
    assert_eq!(v["repos"][0]["tree_matches_lock"], false);
    s.fx.pinstack().arg("lock").assert().code(0);
    assert_eq!(
        pins_text(&s.fx),
        edited.replace(&stale, &app_tree),
        "the comment on the tree line must stay"
    );
}

#[test]
fn apply_refuses_a_lock_that_differs_and_writes_nothing() {
    let s = setup();
    s.fx.pinstack().args(["fetch"]).assert().code(0);
    let checkout = s.fx.checkout("app");
    let before = snapshot(&checkout);
    let stale = s.app.tree(&s.app_base);
    let text = s
        .text
        .replacen("\n\n  lib:", &format!("\n    tree: {stale}\n\n  lib:"), 1);
    s.fx.write("pins.yaml", &text);
    let err = s.fx.stderr(&["apply", "app"], 1);
    assert!(err.contains(&stale) && err.contains("nothing was"), "{err}");
    assert_eq!(snapshot(&checkout), before);
}

#[test]
fn lock_writes_nothing_while_a_bundle_fails() {
    let s = setup();
    // Pin app at the commit that already holds the change: the bundle no longer applies.
    let tip = s.app.head();
    let text = s.text.replace(&s.app_base, &tip);
    s.fx.write("pins.yaml", &text);
    let v = s.fx.json(&["lock"], 1);
    assert_eq!(v["ok"], false);
    assert_eq!(pins_text(&s.fx), text);
    let err = s.fx.stderr(&["lock"], 1);
    assert!(err.contains("nothing was locked"), "{err}");
}

/// pins.yaml kept elsewhere behind a symbolic link (a checkout of the lab's repo, say): `lock`
/// replaces the file the link names, and the link, the file's mode and (as root) its owner stay.
#[test]
fn lock_writes_through_a_symlinked_pins_file_and_keeps_its_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = setup();
    let real = s.fx.path("lab/pins.yaml");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(s.fx.path("pins.yaml"), &real).unwrap();
    std::os::unix::fs::symlink("lab/pins.yaml", s.fx.path("pins.yaml")).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let root = s.fx.sh("id -u") == b"0\n";
    if root {
        s.fx.sh(&format!("chown 1234:1234 '{}'", real.display()));
    }
    s.fx.json(&["lock"], 0);
    let link = std::fs::symlink_metadata(s.fx.path("pins.yaml")).unwrap();
    assert!(link.file_type().is_symlink(), "the link stays a link");
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.contains("tree:"), "{text}");
    let meta = std::fs::metadata(&real).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (1234, 1234));
    }
}

/// pins.yaml edited while lock fetches (a person moving a pin, say): lock refuses rather than
/// write the trees it worked out for the earlier pins next to the new ones.
#[test]
fn lock_refuses_when_pins_yaml_changes_while_it_runs() {
    let s = setup();
    s.lib.write("lib.c", "int y;\n");
    let moved = s.lib.commit("moved on");
    let (path, marker) = s.fx.slow_git();
    let child =
        s.fx.pinstack_std()
            .arg("lock")
            .env("PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(std::time::Instant::now() < until, "no fetch began");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let edited = s.text.replace(&s.lib_base, &moved);
    s.fx.write("pins.yaml", &edited);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed while lock ran"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pins_text(&s.fx), edited);
}
