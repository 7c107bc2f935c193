//! `pinstack bundle pack|unpack|show|import`: the codec as coreutils sees it, and pins.yaml
//! edits that leave everything else in the file as it was.

use serde_json::Value;

use crate::harness::{Fixture, Upstream, numbered, pipe, sha256};

/// A diff with a bit of everything: a binary file, a rename, a mode change, a new and a deleted
/// file, a missing final newline.
fn rich_diff(fx: &Fixture) -> (Upstream, String, Vec<u8>) {
    let up = fx.upstream("app");
    up.write("src/main.py", numbered("line", 40))
        .write("src/old name.py", numbered("moved", 20))
        .write("run.sh", "#!/bin/sh\necho hi\n")
        .write("gone.txt", "bye\n")
        .write("logo.bin", [0u8, 1, 2, 3, 255, 254, 0, 7]);
    let base = up.commit("base");
    let mut main = numbered("line", 40);
    main = main.replace("line 10\n", "line 10 changed\n");
    up.write("src/main.py", main)
        .rename("src/old name.py", "src/new name.py")
        .chmod("run.sh", 0o755)
        .remove("gone.txt")
        .write("new.txt", "no newline at the end")
        .write("logo.bin", [9u8, 0, 0, 0, 255, 1, 2, 3, 4]);
    let tip = up.commit("change");
    let diff = up.diff(&base, &tip);
    (up, base, diff)
}

#[test]
fn pack_then_unpack_gives_the_diff_back_byte_for_byte() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let b = fx.bundle("rich", &diff);
    fx.pinstack()
        .args(["bundle", "unpack", &b.path, "-o", "out.diff"])
        .assert()
        .code(0);
    assert_eq!(fx.read("out.diff"), diff);
    let stdout = fx
        .pinstack()
        .args(["bundle", "unpack", &b.path])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(stdout, diff);
}

#[test]
fn packed_bundle_decodes_with_coreutils() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let b = fx.bundle("rich", &diff);
    let decoded = fx.sh(&format!("base64 -d < '{}' | gzip -dc", b.path));
    assert_eq!(decoded, diff);
}

#[test]
fn packed_bundle_is_wrapped_at_76_columns() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let b = fx.bundle("rich", &diff);
    let text = String::from_utf8(fx.read(&b.path)).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1, "the test diff should span several lines");
    let (last, full) = lines.split_last().unwrap();
    assert!(full.iter().all(|l| l.len() == 76), "{lines:?}");
    assert!(!last.is_empty() && last.len() <= 76);
    // GNU base64 wraps the same bytes the same way.
    let gz = pipe("base64", &["-d"], text.as_bytes());
    assert_eq!(pipe("base64", &[], &gz), text.as_bytes());
}

#[test]
fn pack_is_deterministic() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let first = fx.bundle("one", &diff);
    let second = fx.bundle("two", &diff);
    assert_eq!(fx.read(&first.path), fx.read(&second.path));
    // Packing to stdout gives the same bytes as packing to a file.
    let stdout = fx
        .pinstack()
        .args(["bundle", "pack", "patches/one.patch", "-o", "-"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(stdout, fx.read(&first.path));
    // gzip's header holds no time stamp and no file name.
    let gz = pipe("base64", &["-d"], &stdout);
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
    assert_eq!(gz[3] & 0x08, 0, "gzip must hold no file name");
}

#[test]
fn pack_reports_both_hashes() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    fx.write("d.patch", &diff);
    let v = fx.json(&["bundle", "pack", "d.patch"], 0);
    let encoded = fx.read("d.patch.gz.b64");
    assert_eq!(v["bundle"], "d.patch.gz.b64");
    assert_eq!(v["sha256"], sha256(&encoded).as_str());
    assert_eq!(v["diff_sha256"], sha256(&diff).as_str());
}

#[test]
fn show_counts_files_hunks_and_lines() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", numbered("a", 30))
        .write("b.txt", numbered("b", 5));
    let base = up.commit("base");
    let a = numbered("a", 30)
        .replace("a 2\n", "a 2 changed\n")
        .replace("a 25\n", "");
    up.write("a.txt", a)
        .write("b.txt", format!("{}b 6\nb 7\n", numbered("b", 5)))
        .write("c.bin", [0u8, 159, 146, 150]);
    let tip = up.commit("tip");
    let b = fx.bundle("show", &up.diff(&base, &tip));
    let v = fx.json(&["bundle", "show", &b.path], 0);
    assert_eq!(v["sha256"], b.sha256.as_str());
    assert_eq!(v["diff_sha256"], b.diff_sha256.as_str());
    assert_eq!(v["hunks"], 3, "{v:#}");
    assert_eq!(v["added"], 3, "{v:#}");
    assert_eq!(v["removed"], 2, "{v:#}");
    let files = v["files"].as_array().unwrap();
    let by_path = |p: &str| -> &Value { files.iter().find(|f| f["path"] == p).unwrap() };
    assert_eq!(files.len(), 3);
    assert_eq!(by_path("a.txt")["hunks"], 2);
    assert_eq!(by_path("a.txt")["added"], 1);
    assert_eq!(by_path("a.txt")["removed"], 2);
    assert_eq!(by_path("b.txt")["added"], 2);
    assert_eq!(by_path("c.bin")["binary"], true);
    assert_eq!(by_path("c.bin")["change"], "added");
    // The human form says the same.
    let text = fx.stdout(&["bundle", "show", &b.path], 0);
    assert!(text.contains("3 files, 3 hunks, +3 -2"), "{text}");
}

#[test]
fn show_describes_renames_and_mode_changes() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let b = fx.bundle("rich", &diff);
    let v = fx.json(&["bundle", "show", &b.path], 0);
    let files = v["files"].as_array().unwrap();
    let renamed = files.iter().find(|f| f["change"] == "renamed").unwrap();
    assert_eq!(renamed["old_path"], "src/old name.py");
    assert_eq!(renamed["path"], "src/new name.py");
    let mode = files.iter().find(|f| f["path"] == "run.sh").unwrap();
    assert_eq!(mode["old_mode"], "100644");
    assert_eq!(mode["new_mode"], "100755");
    let deleted = files.iter().find(|f| f["path"] == "gone.txt").unwrap();
    assert_eq!(deleted["change"], "deleted");
}

/// A pins.yaml written by hand, with comments, blank lines and odd spacing.
const HAND_PINS: &str = "\
# The stack's pins. Keep this comment.
repos:
  # the engine
  app:
    url: URL_APP   # where it lives
    commit: COMMIT_APP

    # no bundles yet
  lab:
    url: URL_LAB
    commit: COMMIT_LAB
    patches:
      # the first bundle
      - bundle: patches/first.patch.gz.b64
        sha256: SHA_FIRST
        diff_sha256: DIFF_FIRST
    tree: TREE_LAB   # locked
# trailing comment
";

struct ImportSetup {
    fx: Fixture,
    app: Upstream,
    app_base: String,
    diff: Vec<u8>,
    text: String,
}

fn import_setup() -> ImportSetup {
    let fx = Fixture::new();
    let app = fx.upstream("app");
    app.write("pkg/sub/mod.py", numbered("x", 10));
    let app_base = app.commit("base");
    app.write(
        "pkg/sub/mod.py",
        numbered("x", 10).replace("x 3\n", "x 3!\n"),
    );
    let app_tip = app.commit("tip");
    let diff = app.diff_relative("pkg/sub", &app_base, &app_tip);

    let lab = fx.upstream("lab");
    lab.write("l.txt", "l\n");
    let lab_base = lab.commit("base");
    lab.write("l.txt", "l2\n");
    let lab_tip = lab.commit("tip");
    let first = fx.bundle("first", &lab.diff(&lab_base, &lab_tip));
    let lab_tree = fx.oracle_tree(&lab, &lab_base, &[(&lab.diff(&lab_base, &lab_tip), None)]);

    let text = HAND_PINS
        .replace("URL_APP", &app.url())
        .replace("COMMIT_APP", &app_base)
        .replace("URL_LAB", &lab.url())
        .replace("COMMIT_LAB", &lab_base)
        .replace("SHA_FIRST", &first.sha256)
        .replace("DIFF_FIRST", &first.diff_sha256)
        .replace("TREE_LAB", &lab_tree);
    fx.write("pins.yaml", &text);
    ImportSetup {
        fx,
        app,
        app_base,
        diff,
        text,
    }
}

/// Asserts that `after` is `before` with one block of lines inserted; returns that block.
fn inserted_block(before: &str, after: &str) -> Vec<String> {
    let b: Vec<&str> = before.split_inclusive('\n').collect();
    let a: Vec<&str> = after.split_inclusive('\n').collect();
    let head = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = b[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    assert_eq!(
        head + tail,
        b.len(),
        "pins.yaml changed beyond an insertion:\n--- before\n{before}\n--- after\n{after}"
    );
    a[head..a.len() - tail]
        .iter()
        .map(|l| l.trim_end_matches('\n').to_owned())
        .collect()
}

#[test]
fn import_creates_the_patches_list_and_keeps_the_rest_of_the_file() {
    let s = import_setup();
    s.fx.write("fix-mod.patch", &s.diff);
    let v = s.fx.json(
        &[
            "bundle",
            "import",
            "fix-mod.patch",
            "--repo",
            "app",
            "--base-dir",
            "pkg/sub",
        ],
        0,
    );
    let bundle = s.fx.read("patches/fix-mod.patch.gz.b64");
    let sha = sha256(&bundle);
    let diff_sha = sha256(&s.diff);
    assert_eq!(v["bundle"], "patches/fix-mod.patch.gz.b64");
    assert_eq!(v["sha256"], sha.as_str());
    assert_eq!(v["diff_sha256"], diff_sha.as_str());
    let after = String::from_utf8(s.fx.read("pins.yaml")).unwrap();
    let block = inserted_block(&s.text, &after);
    assert_eq!(
        block,
        vec![
            "    patches:".to_owned(),
            "      - bundle: patches/fix-mod.patch.gz.b64".to_owned(),
            format!("        sha256: {sha}"),
            format!("        diff_sha256: {diff_sha}"),
            "        base_dir: pkg/sub".to_owned(),
        ]
    );
    // The new entry belongs to app, after its last key and before lab.
    let at = after.find("    patches:").unwrap();
    assert!(at > after.find(&s.app_base).unwrap());
    assert!(at < after.find("  lab:").unwrap());
    // The imported bundle is packed like `bundle pack` packs it, and it applies.
    assert_eq!(pipe("sh", &["-c", "base64 -d | gzip -dc"], &bundle), s.diff);
    let check = s.fx.json(&["check"], 0);
    assert_eq!(check["ok"], true, "{check:#}");
    let want =
        s.fx.oracle_tree(&s.app, &s.app_base, &[(&s.diff, Some("pkg/sub"))]);
    assert_eq!(check["repos"][0]["tree"], want.as_str());
}

#[test]
fn import_appends_to_an_existing_patches_list() {
    let s = import_setup();
    // A second bundle for lab, made on top of the first.
    let lab = Upstream {
        name: "lab".to_owned(),
        path: s.fx.path("upstream/lab"),
    };
    lab.write("m.txt", "more\n");
    let tip = lab.head();
    let next = lab.commit("more");
    s.fx.write("more.diff", lab.diff(&tip, &next));
    s.fx.pinstack()
        .args(["bundle", "import", "more.diff", "--repo", "lab"])
        .assert()
        .code(0);
    let after = String::from_utf8(s.fx.read("pins.yaml")).unwrap();
    let block = inserted_block(&s.text, &after);
    let sha = sha256(&s.fx.read("patches/more.patch.gz.b64"));
    assert_eq!(
        block,
        vec![
            "      - bundle: patches/more.patch.gz.b64".to_owned(),
            format!("        sha256: {sha}"),
            format!("        diff_sha256: {}", sha256(&s.fx.read("more.diff"))),
        ]
    );
    let first = after.find("patches/first.patch.gz.b64").unwrap();
    let more = after.find("patches/more.patch.gz.b64").unwrap();
    assert!(first < more && more < after.find("    tree:").unwrap());
}

#[test]
fn import_of_an_unknown_repo_changes_nothing() {
    let s = import_setup();
    s.fx.write("fix.patch", &s.diff);
    let err =
        s.fx.stderr(&["bundle", "import", "fix.patch", "--repo", "nope"], 2);
    assert!(err.contains("nope"), "{err}");
    assert_eq!(String::from_utf8(s.fx.read("pins.yaml")).unwrap(), s.text);
    assert!(!s.fx.path("patches/fix.patch.gz.b64").exists());
}

#[test]
fn pack_refuses_what_is_not_a_diff() {
    let fx = Fixture::new();
    fx.write("notes.txt", "just some notes\nnot a diff\n");
    let err = fx.stderr(&["bundle", "pack", "notes.txt"], 2);
    assert!(err.contains("notes.txt"), "{err}");
    assert!(err.contains("not a git diff"), "{err}");
    assert!(!fx.path("notes.txt.gz.b64").exists());

    fx.write("empty.diff", "");
    let err = fx.stderr(&["bundle", "pack", "empty.diff"], 2);
    assert!(err.contains("empty.diff"), "{err}");
    assert!(!fx.path("empty.diff.gz.b64").exists());
}

#[test]
fn pack_refuses_hostile_paths() {
    let fx = Fixture::new();
    fx.write(
        "evil.diff",
        "diff --git a/../x b/../x\nnew file mode 100644\nindex 0000000..ce01362\n\
         --- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+hello\n",
    );
    let err = fx.stderr(&["bundle", "pack", "evil.diff"], 2);
    assert!(err.contains("evil.diff") && err.contains(".."), "{err}");
    assert!(!fx.path("evil.diff.gz.b64").exists());
}

/// The gzip stream inside a packed bundle, from coreutils.
fn gzip_of(fx: &Fixture, diff_rel: &str) -> Vec<u8> {
    fx.sh(&format!("gzip -n -c '{diff_rel}'"))
}

#[test]
fn unpack_refuses_corrupt_bundles_naming_the_file() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    fx.write("d.diff", &diff);
    let gz = gzip_of(&fx, "d.diff");
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad-base64.b64",
            b"this is *not* base64!\n".to_vec(),
            "base64",
        ),
        (
            "truncated.b64",
            pipe("base64", &[], &gz[..gz.len() / 2]),
            "gzip",
        ),
        ("bad-crc.b64", pipe("base64", &[], &bad_crc), "gzip"),
        ("not-gzip.b64", pipe("base64", &[], &diff), "gzip"),
        ("blank.b64", b"\n \n\t\n".to_vec(), "nothing"),
        (
            "empty-gzip.b64",
            fx.sh("printf '' | gzip -n | base64"),
            "nothing",
        ),
    ];
    for (name, bytes, why) in cases {
        fx.write(name, &bytes);
        let err = fx.stderr(&["bundle", "unpack", name, "-o", "out.diff"], 2);
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(why), "{name}: expected {why:?} in {err}");
        assert!(!fx.path("out.diff").exists(), "{name}: wrote output");
        let err = fx.stderr(&["bundle", "show", name], 2);
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn unpack_reads_every_gzip_member() {
    let fx = Fixture::new();
    let (_, _, diff) = rich_diff(&fx);
    let half = diff.len() / 2;
    fx.write("a.part", &diff[..half]);
    fx.write("b.part", &diff[half..]);
    let b64 =
        fx.sh("gzip -n -c a.part > a.gz && gzip -n -c b.part > b.gz && cat a.gz b.gz | base64");
    fx.write("two-members.b64", &b64);
    fx.pinstack()
        .args(["bundle", "unpack", "two-members.b64", "-o", "out.diff"])
        .assert()
        .code(0);
    assert_eq!(fx.read("out.diff"), diff);
}

#[test]
fn unpack_refuses_a_gzip_bomb() {
    let fx = Fixture::new();
    fx.sh("head -c 300M /dev/zero | gzip -1 -n | base64 > bomb.b64");
    let err = fx.stderr(&["bundle", "unpack", "bomb.b64", "-o", "out.diff"], 2);
    assert!(err.contains("bomb.b64"), "{err}");
    assert!(err.contains("gzip bomb"), "{err}");
    assert!(!fx.path("out.diff").exists());
}
