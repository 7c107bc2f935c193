//! pinstack's own patch engine against git: random trees and random edits, turned into diffs by
//! `git diff` with several context sizes and rename and copy detection, must give exactly the
//! tree git gives, through `check` and through `apply`; applied where the pin has moved, a
//! bundle pinstack accepts must be one `git apply` accepts, with the same result.

use proptest::prelude::*;

use crate::harness::{Fixture, Pin, Upstream, git, git_ok};

/// Paths a case may use: nested folders, a name that is a file in one commit and a folder in
/// another (`p` and `p/q`), a name with a space, and a symbolic link (`link`).
const PATHS: [&str; 9] = [
    "a.txt",
    "b.sh",
    "d/c.txt",
    "d/e/f.txt",
    "d/e/g h.txt",
    "p",
    "p/q",
    "z.txt",
    LINK,
];

/// The path that holds a symbolic link (its target made from the text) rather than a file.
const LINK: &str = "link";

/// Few distinct words, so that context lines repeat and a wrong position would still match
/// somewhere.
const WORDS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "alpha"];

/// A file's text: its lines (as indexes into `WORDS`), CRLF or LF, and whether the last line
/// has its newline.
#[derive(Debug, Clone)]
struct Text {
    lines: Vec<usize>,
    crlf: bool,
    final_newline: bool,
}

impl Text {
    fn bytes(&self) -> Vec<u8> {
        let end = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for (i, w) in self.lines.iter().enumerate() {
            out.push_str(WORDS[*w]);
            out.push_str(&i.to_string());
            if i + 1 < self.lines.len() || self.final_newline {
                out.push_str(end);
            }
        }
        out.into_bytes()
    }
}

fn text() -> impl Strategy<Value = Text> {
    (
        prop::collection::vec(0..WORDS.len(), 0..24),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(lines, crlf, final_newline)| Text {
            lines,
            crlf,
            final_newline,
        })
}

/// What happens to one path between the pin and the bundle's tip.
#[derive(Debug, Clone)]
enum Edit {
    Keep,
    /// Lines replaced, inserted or removed: (position, new word or none to remove, insert).
    Lines(Vec<(usize, Option<usize>, bool)>),
    Rewrite(Text),
    Remove,
    ToggleExecutable,
    /// Moved to `<path>.moved`, with its lines edited too.
    Move(Vec<(usize, Option<usize>, bool)>),
    LoseFinalNewline,
}

fn line_edits() -> impl Strategy<Value = Vec<(usize, Option<usize>, bool)>> {
    prop::collection::vec(
        (0..30usize, prop::option::of(0..WORDS.len()), any::<bool>()),
        1..5,
    )
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => Just(Edit::Keep),
        6 => line_edits().prop_map(Edit::Lines),
        1 => text().prop_map(Edit::Rewrite),
        1 => Just(Edit::Remove),
        1 => Just(Edit::ToggleExecutable),
        1 => line_edits().prop_map(Edit::Move),
        1 => Just(Edit::LoseFinalNewline),
    ]
}

fn edited(text: &Text, edits: &[(usize, Option<usize>, bool)]) -> Text {
    let mut t = text.clone();
    for &(at, word, insert) in edits {
        let at = at % (t.lines.len() + 1);
        match (word, insert) {
            (Some(w), true) => t.lines.insert(at, w),
            (Some(w), false) if at < t.lines.len() => t.lines[at] = w,
            (None, _) if at < t.lines.len() => {
                t.lines.remove(at);
            }
            _ => t.lines.push(word.unwrap_or(0)),
        }
    }
    t
}

/// A case: which paths exist at the pin with what text, and what happens to each.
#[derive(Debug, Clone)]
struct Case {
    files: Vec<(usize, Text, Edit)>,
    /// Files the tip adds: (index into `PATHS`, text).
    added: Vec<(usize, Text)>,
    context: u8,
    detection: &'static str,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((0..PATHS.len(), text(), edit()), 1..7),
        prop::collection::vec((0..PATHS.len(), text()), 0..3),
        prop::sample::select(vec![1u8, 2, 3]),
        prop::sample::select(vec!["-M", "-C", "--no-renames"]),
    )
        .prop_map(|(files, added, context, detection)| Case {
            files,
            added,
            context,
            detection,
        })
}

/// Writes `path` unless a file or folder in the way makes it impossible; `LINK` becomes a
/// symbolic link to the text's first line.
fn try_write(up: &Upstream, path: &str, bytes: &[u8]) -> bool {
    let full = up.path.join(path);
    let blocked = full.is_dir()
        || full
            .ancestors()
            .skip(1)
            .take_while(|a| *a != up.path)
            .any(|a| a.is_file());
    if blocked {
        return false;
    }
    put(up, path, bytes);
    true
}

/// Replaces whatever is at `path` with `bytes` (a link's target for `LINK`).
fn put(up: &Upstream, path: &str, bytes: &[u8]) {
    if path != LINK {
        up.write(path, bytes);
        return;
    }
    let full = up.path.join(path);
    let _ = std::fs::remove_file(&full);
    let first = bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    let target = if first.is_empty() {
        "nothing"
    } else {
        std::str::from_utf8(first).unwrap()
    };
    std::os::unix::fs::symlink(target, full).unwrap();
}

fn exists(up: &Upstream, path: &str) -> bool {
    std::fs::symlink_metadata(up.path.join(path)).is_ok()
}

/// Commits the pin and the tip of a case; returns them.
fn commit_case(up: &Upstream, case: &Case) -> (String, String) {
    let mut present: Vec<(&str, Text, &Edit)> = Vec::new();
    for (i, text, e) in &case.files {
        let path = PATHS[*i];
        if present.iter().all(|(p, ..)| *p != path) && try_write(up, path, &text.bytes()) {
            if path.ends_with(".sh") {
                up.chmod(path, 0o755);
            }
            present.push((path, text.clone(), e));
        }
    }
    let pin = up.commit("pin");
    for (path, text, e) in &present {
        match e {
            Edit::Keep => {}
            Edit::Lines(l) => put(up, path, &edited(text, l).bytes()),
            Edit::Rewrite(t) => put(up, path, &t.bytes()),
            Edit::Remove => {
                up.remove(path);
            }
            // A link becomes a file: a change of type, two sections for one path.
            Edit::ToggleExecutable if *path == LINK => {
                up.remove(path).write(path, text.bytes());
            }
            Edit::ToggleExecutable => {
                let mode = if path.ends_with(".sh") { 0o644 } else { 0o755 };
                up.chmod(path, mode);
            }
            Edit::Move(_) if *path == LINK => {
                up.rename(path, &format!("{path}.moved"));
            }
            Edit::Move(l) => {
                let to = format!("{path}.moved");
                up.rename(path, &to).write(&to, edited(text, l).bytes());
            }
            Edit::LoseFinalNewline => {
                let mut t = text.clone();
                t.final_newline = false;
                put(up, path, &t.bytes());
            }
        }
    }
    for (i, text) in &case.added {
        let path = PATHS[*i];
        if !exists(up, path) {
            try_write(up, path, &text.bytes());
        }
    }
    let tip = up.commit("tip");
    (pin, tip)
}

fn diff(up: &Upstream, case: &Case, from: &str, to: &str) -> Vec<u8> {
    let context = format!("-U{}", case.context);
    crate::harness::git_bytes(
        &up.path,
        &["diff", "--binary", &context, case.detection, from, to],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A bundle made by `git diff` between two commits gives, applied to the first, exactly
    /// the second's tree: in `check` (in memory) and in `apply` (on disk), which also compares
    /// with `git apply` on a clone.
    #[test]
    fn a_diff_applied_to_its_base_gives_its_tip(case in case()) {
        let fx = Fixture::new();
        let up = fx.upstream("app");
        let (pin, tip) = commit_case(&up, &case);
        prop_assume!(up.tree(&pin) != up.tree(&tip));
        let diff = diff(&up, &case, &pin, &tip);
        let tree = fx.assert_apply_like_git(&up, &pin, &[(&diff, None)]);
        prop_assert_eq!(tree, up.tree(&tip), "{}", String::from_utf8_lossy(&diff));
    }

    /// Where the pin has moved (the bundle was made on another commit), pinstack accepts a
    /// bundle only if `git apply` does, and then gives the same tree; when it refuses, it says
    /// which file of the bundle and why.
    #[test]
    fn on_a_moved_pin_pinstack_accepts_no_more_than_git(
        case in case(),
        drift in prop::collection::vec((0..PATHS.len(), line_edits()), 1..4),
    ) {
        let fx = Fixture::new();
        let up = fx.upstream("app");
        let (made_on, tip) = commit_case(&up, &case);
        prop_assume!(up.tree(&made_on) != up.tree(&tip));
        let diff = diff(&up, &case, &made_on, &tip);
        // The pin: the bundle's base with lines of some files edited.
        up.restore(&made_on);
        for (i, edits) in &drift {
            let path = up.path.join(PATHS[*i]);
            let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
            if let Ok(bytes) = std::fs::read(&path)
                && is_file
            {
                std::fs::write(&path, drifted(&bytes, edits)).unwrap();
            }
        }
        let pin = up.commit("moved pin");
        let b = fx.bundle("drift", &diff);
        fx.pins(&[Pin::new("app", &up, &pin).patch(b.entry())]);
        let out = fx.pinstack_std().args(["check", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let bundle = &v["repos"][0]["bundles"][0];
        if bundle["status"] == "ok" {
            prop_assert_eq!(out.status.code(), Some(0), "{:#}", v);
            // oracle_tree runs `git apply`, which fails the test if git refuses.
            let want = fx.oracle_tree(&up, &pin, &[(&diff, None)]);
            prop_assert_eq!(v["repos"][0]["tree"].as_str(), Some(want.as_str()));
        } else {
            prop_assert_eq!(out.status.code(), Some(1), "{:#}", v);
            prop_assert_eq!(&bundle["status"], "does_not_apply", "{:#}", v);
            let file = bundle["file"].as_str().unwrap_or_default();
            let named = PATHS.iter().any(|p| file == *p || file == format!("{p}.moved"));
            prop_assert!(named, "the diagnosis names a file of the bundle: {:#}", v);
            prop_assert!(bundle["diagnosis"] != "other", "{:#}", v);
            prop_assert!(!bundle["detail"].as_str().unwrap_or_default().is_empty());
        }
    }
}

/// `bytes` with some lines replaced, inserted or removed.
fn drifted(bytes: &[u8], edits: &[(usize, Option<usize>, bool)]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    for &(at, word, insert) in edits {
        let at = at % (lines.len() + 1);
        let new = word.map(|w| format!("{} drifted\n", WORDS[w]).into_bytes());
        match (new, insert) {
            (Some(l), true) => lines.insert(at, l),
            (Some(l), false) if at < lines.len() => lines[at] = l,
            (None, _) if at < lines.len() => {
                lines.remove(at);
            }
            (l, _) => lines.push(l.unwrap_or_else(|| b"appended\n".to_vec())),
        }
    }
    lines.concat()
}

// git's rules, case by case (each found by comparing pinstack with git on made-up bundles).

/// An upstream whose commits `a` and `b` are made by `at_a` and `to_b`; returns it with both.
fn two_commits(
    fx: &Fixture,
    at_a: impl FnOnce(&Upstream),
    to_b: impl FnOnce(&Upstream),
) -> (Upstream, String, String) {
    let up = fx.upstream("app");
    at_a(&up);
    let a = up.commit("a");
    to_b(&up);
    let b = up.commit("b");
    (up, a, b)
}

/// Checks `diff` pinned on `pin`; returns the bundle's result and the tree.
fn check_on(fx: &Fixture, up: &Upstream, pin: &str, diff: &[u8]) -> serde_json::Value {
    check_stack(fx, up, pin, &[diff])
}

/// Checks the bundles `diffs`, in order, pinned on `pin`; returns the repo's result.
fn check_stack(fx: &Fixture, up: &Upstream, pin: &str, diffs: &[&[u8]]) -> serde_json::Value {
    let mut p = Pin::new("app", up, pin);
    for (i, diff) in diffs.iter().enumerate() {
        p = p.patch(fx.bundle(&format!("case{i}"), diff).entry());
    }
    fx.pins(&[p]);
    let out = fx
        .pinstack_std()
        .args(["check", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["repos"][0].clone()
}

#[test]
fn renames_that_swap_or_chain_paths_give_gits_tree() {
    let fx = Fixture::new();
    let lines = |w: &str| {
        (0..20)
            .map(|i| format!("{w} line number {i} with words of its own\n"))
            .collect::<String>()
    };
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("a", lines("alpha"))
                .write("b", lines("omega"))
                .write("c0", "c\n");
        },
        |up| {
            up.rename("a", "t").rename("b", "a").rename("t", "b");
        },
    );
    let diff = crate::harness::git_bytes(&up.path, &["diff", "--binary", "-B", "-M", &a, &b]);
    assert!(
        String::from_utf8_lossy(&diff).contains("rename from"),
        "{}",
        String::from_utf8_lossy(&diff)
    );
    assert_eq!(
        fx.assert_apply_like_git(&up, &a, &[(&diff, None)]),
        up.tree(&b)
    );
    // A chain: b moves on to c, a takes b's place.
    up.restore(&a);
    up.rename("b", "c").rename("a", "b");
    let c = up.commit("chain");
    let diff = crate::harness::git_bytes(&up.path, &["diff", "--binary", "-B", "-M", &a, &c]);
    let r = check_on(&fx, &up, &a, &diff);
    assert_eq!(r["tree"], up.tree(&c).as_str(), "{r:#}");
}

#[test]
fn folders_and_files_trade_places_as_in_git() {
    let fx = Fixture::new();
    // x: file to folder; a/: folder removed while its sibling a.txt changes, then goes.
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("x", "x\n")
                .write("a/f", "f\n")
                .write("a.txt", "t\n")
                .write("k", "k\n");
        },
        |up| {
            up.remove("x").write("x/y", "y\n");
            up.remove("a/f").write("a.txt", "t changed\n");
        },
    );
    let diff = up.diff(&a, &b);
    assert_eq!(
        fx.assert_apply_like_git(&up, &a, &[(&diff, None)]),
        up.tree(&b)
    );
    up.restore(&a);
    up.remove("a/f").remove("a.txt");
    let c = up.commit("sibling gone too");
    let r = check_on(&fx, &up, &a, &up.diff(&a, &c));
    assert_eq!(r["tree"], up.tree(&c).as_str(), "{r:#}");
}

#[test]
fn a_file_keeps_its_own_mode_unless_the_bundle_changes_it() {
    let fx = Fixture::new();
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("f", "one\ntwo\n").chmod("f", 0o755);
        },
        |up| {
            up.write("f", "one\nTWO\n");
        },
    );
    let diff = up.diff(&a, &b);
    // The pin has the same file, not executable: git keeps it so.
    up.restore(&a);
    up.chmod("f", 0o644);
    let pin = up.commit("not executable");
    let r = check_on(&fx, &up, &pin, &diff);
    assert_eq!(r["bundles"][0]["status"], "ok", "{r:#}");
    assert_eq!(
        r["tree"],
        fx.oracle_tree(&up, &pin, &[(&diff, None)]).as_str()
    );
}

#[test]
fn what_git_refuses_to_create_or_change_pinstack_refuses() {
    let fx = Fixture::new();
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            // `l` holds what a link to `foo` holds: only its type tells them apart.
            up.write("s", "source\n")
                .write("l", "foo")
                .write("k", "k\n");
        },
        |up| {
            up.rename("s", "t").write("l", "bar").write("n", "new\n");
        },
    );
    let diff = up.diff(&a, &b);
    let refused = |pin: &str, what: &str| {
        let r = check_on(&fx, &up, pin, &diff);
        assert_eq!(r["bundles"][0]["status"], "does_not_apply", "{what}: {r:#}");
        let clone = fx.clone_at(&up, pin, &format!("git-{}", &pin[..8]));
        let file = fx.write("refused.diff", &diff).display().to_string();
        assert!(
            !git_ok(&clone, &["apply", "--cached", "--check", &file]),
            "{what}: git refuses it too"
        );
    };
    // The rename's target already exists.
    up.restore(&a);
    up.write("t", "in the way\n");
    refused(&up.commit("t exists"), "rename target");
    // The file the bundle edits is a symbolic link at the pin.
    up.restore(&a);
    up.remove("l");
    std::os::unix::fs::symlink("foo", up.path.join("l")).unwrap();
    refused(&up.commit("l is a link"), "wrong type");
    // A submodule where the bundle creates a file.
    up.restore(&a);
    let commit = up.head();
    up.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{commit},n"),
    ]);
    up.git(&["commit", "-q", "-m", "n is a submodule"]);
    refused(&up.head(), "submodule");
}

#[test]
fn a_path_renamed_away_is_gone_for_the_sections_after_it() {
    // `git diff` never writes this, but a bundle put together by hand can: one section renames
    // `s` away, a later one changes `s`. git refuses it ("has been renamed/deleted"), and so
    // does pinstack, rather than change the file the rename took. In the other order (the
    // change first, then the rename, which takes `s` as the pin has it) both accept it and
    // agree on the tree.
    let fx = Fixture::new();
    let lines = |fifth: &str| {
        (1..=9)
            .map(|i| {
                if i == 5 {
                    format!("{fifth}\n")
                } else {
                    format!("s {i}\n")
                }
            })
            .collect::<String>()
    };
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("s", lines("s 5"));
        },
        |up| {
            up.rename("s", "t");
        },
    );
    let rename = up.diff(&a, &b);
    up.restore(&a);
    up.write("s", lines("s five"));
    let c = up.commit("s changed");
    let change = up.diff(&a, &c);
    let clone = fx.clone_at(&up, &a, "git-side");

    let renamed_first = [rename.as_slice(), &change].concat();
    let r = check_on(&fx, &up, &a, &renamed_first);
    assert_eq!(r["bundles"][0]["status"], "does_not_apply", "{r:#}");
    let detail = r["bundles"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("renamed away"), "{r:#}");
    let file = fx.write("renamed-first.diff", &renamed_first);
    let file = file.display().to_string();
    assert!(!git_ok(&clone, &["apply", "--cached", "--check", &file]));

    let changed_first = [change.as_slice(), &rename].concat();
    let r = check_on(&fx, &up, &a, &changed_first);
    let file = fx.write("changed-first.diff", &changed_first);
    git(&clone, &["apply", "--cached", &file.display().to_string()]);
    assert_eq!(r["tree"], git(&clone, &["write-tree"]).as_str(), "{r:#}");
}

#[test]
fn a_section_may_not_delete_what_an_earlier_section_wrote() {
    // Hand-made again: one section changes `s`, a later one deletes the changed `s` (or
    // creates `n`, then deletes it). git accepts both, but removes every deleted or replaced
    // file before writing any, so it keeps the written file; pinstack refuses them rather than
    // give another tree than git.
    let fx = Fixture::new();
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("s", "s 1\ns 2\n");
        },
        |up| {
            up.write("s", "s 1\ns two\n").write("n", "new\n");
        },
    );
    let change = up.diff(&a, &b);
    up.remove("s").remove("n");
    let c = up.commit("both gone");
    let delete = up.diff(&b, &c);
    let bundle = [change.as_slice(), &delete].concat();
    let r = check_on(&fx, &up, &a, &bundle);
    assert_eq!(r["bundles"][0]["status"], "does_not_apply", "{r:#}");
    let detail = r["bundles"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("deleted by a section after one that writes it"),
        "{r:#}"
    );
    // git takes it, and keeps what the first sections wrote.
    let clone = fx.clone_at(&up, &a, "git-side");
    let file = fx.write("write-then-delete.diff", &bundle);
    git(&clone, &["apply", "--cached", &file.display().to_string()]);
    assert_eq!(git(&clone, &["ls-files"]), "n\ns");
}

#[test]
fn a_file_that_turns_into_a_folder_and_back_over_two_bundles_gives_gits_tree() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a", "a file\n").write("keep", "k\n");
    let c0 = up.commit("a file");
    up.remove("a").write("a/x", "in a folder\n");
    let c1 = up.commit("a folder");
    up.remove("a/x");
    std::fs::remove_dir(up.path.join("a")).unwrap();
    up.write("a", "a file again\n");
    let c2 = up.commit("a file again");
    let (d1, d2) = (up.diff(&c0, &c1), up.diff(&c1, &c2));
    let r = check_stack(&fx, &up, &c0, &[&d1, &d2]);
    assert_eq!(r["tree"], up.tree(&c2).as_str(), "{r:#}");
    // The other way round: a folder that turns into a file and back.
    let r = check_stack(&fx, &up, &c1, &[&up.diff(&c1, &c2), &up.diff(&c2, &c1)]);
    assert_eq!(r["tree"], up.tree(&c1).as_str(), "{r:#}");
}

#[test]
fn a_file_written_where_an_earlier_bundle_made_a_folder_is_named() {
    // The first bundle turns the file `thing` into a folder; the second, made by hand, writes
    // the file `thing` again beside it. The second bundle's own path is the one to blame.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("thing", "a file\n").write("keep", "k\n");
    let c0 = up.commit("thing is a file");
    up.remove("thing").write("thing/a", "a\n");
    let c1 = up.commit("thing is a folder");
    let first = up.diff(&c0, &c1);
    let creates_thing = "diff --git a/thing b/thing\nnew file mode 100644\n--- /dev/null\n\
                         +++ b/thing\n@@ -0,0 +1 @@\n+a file again\n";
    let r = check_stack(&fx, &up, &c0, &[&first, creates_thing.as_bytes()]);
    let b = &r["bundles"][1];
    assert_eq!(b["status"], "does_not_apply", "{r:#}");
    assert_eq!(b["diagnosis"], "exists", "{r:#}");
    assert_eq!(b["file"], "thing", "{r:#}");
}

#[test]
fn a_deletion_that_does_not_apply_says_how_the_file_differs() {
    let fx = Fixture::new();
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("f", "one\ntwo\n").write("keep", "k\n");
        },
        |up| {
            up.remove("f");
        },
    );
    let delete = up.diff(&a, &b);
    let on = |content: &str| {
        up.restore(&a);
        up.write("f", content);
        let pin = up.commit("f differs");
        check_on(&fx, &up, &pin, &delete)["bundles"][0].clone()
    };
    for (content, says) in [
        ("one\r\ntwo\r\n", "not byte for byte"),
        ("one\ntwo", "not byte for byte"),
        ("zero\none\ntwo\n", "holds more than the bundle removes"),
        ("one\ntwo\nthree\n", "holds more than the bundle removes"),
        ("one\n", "not the file the bundle deletes"),
    ] {
        let r = on(content);
        assert_eq!(r["diagnosis"], "context", "{content:?}: {r:#}");
        assert_eq!(r["file"], "f", "{content:?}: {r:#}");
        assert!(
            r["detail"].as_str().unwrap().contains(says),
            "{content:?}: {r:#}"
        );
    }
    // Deleted twice by one bundle: the bundle contradicts itself.
    let twice = [delete.as_slice(), &delete].concat();
    let r = check_on(&fx, &up, &a, &twice)["bundles"][0].clone();
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("has been deleted by an earlier section"),
        "{r:#}"
    );
}

#[test]
fn a_folder_and_a_link_trade_places_as_in_git() {
    // git writes a folder that becomes a link as the folder's files deleted and the link
    // created, and the reverse as the link deleted and the files created: nothing is written
    // through a link, because the deletions come first. `apply` and `check` both give git's
    // tree, both ways.
    for folder_first in [true, false] {
        let fx = Fixture::new();
        let up = fx.upstream("app");
        up.write("d/x", "x\n").write("keep", "k\n");
        let folder = up.commit("d is a folder");
        up.remove("d/x");
        std::fs::remove_dir(up.path.join("d")).unwrap();
        std::os::unix::fs::symlink("keep", up.path.join("d")).unwrap();
        let link = up.commit("d is a link");
        let (from, to) = if folder_first {
            (&folder, &link)
        } else {
            (&link, &folder)
        };
        let tree = fx.assert_apply_like_git(&up, from, &[(&up.diff(from, to), None)]);
        assert_eq!(tree, up.tree(to));
    }
}

#[test]
fn a_diff_without_a_and_b_prefixes_is_refused_when_packed() {
    let fx = Fixture::new();
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("b/file", "one\n");
        },
        |up| {
            up.write("b/file", "two\n");
        },
    );
    let diff = crate::harness::git_bytes(&up.path, &["diff", "--no-prefix", &a, &b]);
    let path = fx.write("no-prefix.diff", &diff);
    let err = fx.stderr(&["bundle", "pack", &path.display().to_string()], 2);
    assert!(err.contains("--no-prefix"), "{err}");
}

#[test]
fn zero_context_hunks_apply_where_their_headers_say() {
    let fx = Fixture::new();
    let numbered = |skip: usize| {
        (1..=9)
            .filter(|&i| i != skip)
            .map(|i| format!("{i}\n"))
            .collect::<String>()
    };
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("f", numbered(0)).write("g", numbered(0));
        },
        |up| {
            up.write("f", numbered(3))
                .write("g", numbered(9).replace("5\n", "five\n"));
        },
    );
    let diff = crate::harness::git_bytes(&up.path, &["diff", "-U0", &a, &b]);
    let r = check_on(&fx, &up, &a, &diff);
    assert_eq!(r["tree"], up.tree(&b).as_str(), "{r:#}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Binary files (git's `literal` and `delta` patches) changed at random give the tip's
    /// tree, and the bundle does not apply to any other version of the file.
    #[test]
    fn binary_patches_give_the_tips_tree(
        blob in prop::collection::vec(any::<u8>(), 1..6000),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..12),
        other in any::<u8>(),
    ) {
        let fx = Fixture::new();
        let mut blob = blob;
        blob.push(0); // binary to git
        let mut changed = blob.clone();
        for (at, byte, how) in &edits {
            let i = at.index(changed.len());
            match how {
                0 => changed[i] = *byte,
                1 => changed.insert(i, *byte),
                _ => changed.truncate(i.max(1)),
            }
        }
        let (up, a, b) = two_commits(
            &fx,
            |up| {
                up.write("data.bin", &blob).write("k", "k\n");
            },
            |up| {
                up.write("data.bin", &changed).write("new.bin", [0u8, other, 1, 2]);
            },
        );
        prop_assume!(up.tree(&a) != up.tree(&b));
        let diff = up.diff(&a, &b);
        prop_assert!(String::from_utf8_lossy(&diff).contains("GIT binary patch"));
        let r = check_on(&fx, &up, &a, &diff);
        let want = up.tree(&b);
        prop_assert_eq!(r["tree"].as_str(), Some(want.as_str()), "{:#}", r);
        // On another version of the file, git refuses and so does pinstack.
        up.restore(&a);
        let mut moved = blob.clone();
        moved[0] = moved[0].wrapping_add(1);
        up.write("data.bin", &moved);
        let pin = up.commit("the file moved on");
        let r = check_on(&fx, &up, &pin, &diff);
        prop_assert_eq!(&r["bundles"][0]["status"], "does_not_apply", "{:#}", r);
        prop_assert_eq!(&r["bundles"][0]["diagnosis"], "binary", "{:#}", r);
    }
}

#[test]
fn a_bundle_that_moves_a_submodule_gives_gits_tree() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a", "a\n");
    let first = up.commit("first");
    let link = |commit: &str| {
        up.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},sub"),
        ]);
        up.git(&["commit", "-q", "-m", "sub"]);
        up.head()
    };
    let a = link(&first);
    up.write("a", "b\n");
    let second = up.commit("second");
    let b = link(&second);
    let diff = up.diff(&a, &b);
    assert!(String::from_utf8_lossy(&diff).contains("Subproject commit"));
    let r = check_on(&fx, &up, &a, &diff);
    assert_eq!(r["tree"], up.tree(&b).as_str(), "{r:#}");
    // git agrees, applying to the index.
    let clone = fx.clone_at(&up, &a, "git-side");
    let file = fx.write("sub.diff", &diff).display().to_string();
    git(&clone, &["apply", "--cached", &file]);
    assert_eq!(git(&clone, &["write-tree"]), up.tree(&b));
    // Where the pin has the submodule at another commit, git refuses and so does pinstack.
    up.restore(&a);
    let pin = link(&b);
    let r = check_on(&fx, &up, &pin, &diff);
    assert_eq!(r["bundles"][0]["status"], "does_not_apply", "{r:#}");
    assert_eq!(r["bundles"][0]["diagnosis"], "context", "{r:#}");
    assert!(
        r["bundles"][0]["detail"].as_str().unwrap().contains("sub"),
        "{r:#}"
    );
    let clone = fx.clone_at(&up, &pin, "git-moved");
    assert!(!git_ok(&clone, &["apply", "--cached", "--check", &file]));
}

#[test]
fn a_bundle_that_removes_a_submodule_gives_gits_tree() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a", "a\n");
    let first = up.commit("first");
    up.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{first},sub"),
    ]);
    up.git(&["commit", "-q", "-m", "sub"]);
    let a = up.head();
    up.git(&["rm", "-q", "--cached", "sub"]);
    up.git(&["commit", "-q", "-m", "no sub"]);
    let b = up.head();
    let r = check_on(&fx, &up, &a, &up.diff(&a, &b));
    assert_eq!(r["tree"], up.tree(&b).as_str(), "{r:#}");
}

#[test]
fn the_diagnosis_is_about_the_section_that_failed() {
    // `x` turns from a file into a link: git writes a deletion and a creation of `x`, and the
    // creation, read alone against the pin, looks like a file that already exists. What fails
    // on the moved pin is `z.txt`, and that is what the diagnosis names.
    let fx = Fixture::new();
    let z = |line5: &str| {
        (1..=9)
            .map(|i| {
                if i == 5 {
                    format!("{line5}\n")
                } else {
                    format!("z {i}\n")
                }
            })
            .collect::<String>()
    };
    let (up, a, b) = two_commits(
        &fx,
        |up| {
            up.write("x", "x\n").write("z.txt", z("z 5"));
        },
        |up| {
            up.remove("x").write("z.txt", z("z five"));
            std::os::unix::fs::symlink("z.txt", up.path.join("x")).unwrap();
        },
    );
    let diff = up.diff(&a, &b);
    assert!(String::from_utf8_lossy(&diff).contains("new file mode 120000"));
    assert_eq!(check_on(&fx, &up, &a, &diff)["tree"], up.tree(&b).as_str());
    up.restore(&a);
    up.write("z.txt", z("z 5").replace("z 4\n", "z 4 moved on\n"));
    let pin = up.commit("z moved on");
    let r = check_on(&fx, &up, &pin, &diff);
    let bundle = &r["bundles"][0];
    assert_eq!(bundle["status"], "does_not_apply", "{r:#}");
    assert_eq!(bundle["file"], "z.txt", "{r:#}");
    assert_eq!(bundle["diagnosis"], "context", "{r:#}");
}
