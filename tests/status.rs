//! The work tree's status as pinstack reads it (audit, apply and the engine's digests share one
//! status walk, which trusts the index's stat data where git would): for every kind of change,
//! the paths `pinstack audit` lists are the paths `git status` lists, on the same tree, after
//! the same edits. Git is the oracle; the edits include the ones the stat data alone would
//! miss (same size, same second) and index files of every version.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;

use crate::harness::{Fixture, Pin, git, git_bytes};

/// A checkout made by `pinstack fetch` of a small upstream with nested folders, a symlink and
/// an executable.
struct Tree {
    fx: Fixture,
    co: PathBuf,
}

fn tree() -> Tree {
    let fx = Fixture::new();
    let up = fx.upstream("up");
    for (dir, n) in [("", 3), ("a", 4), ("a/b", 3), ("a/b/c", 2), ("d", 3)] {
        for i in 0..n {
            let rel = if dir.is_empty() {
                format!("f{i}.txt")
            } else {
                format!("{dir}/f{i}.txt")
            };
            up.write(&rel, format!("{rel}\nline two\n"));
        }
    }
    up.write("tool.sh", "#!/bin/sh\necho hi\n")
        .chmod("tool.sh", 0o755);
    up.write(".gitignore", "*.o\nbuild/\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink("f0.txt", up.path.join("link")).unwrap();
    let commit = up.commit("the pin");
    fx.pins(&[Pin::new("up", &up, &commit)]);
    fx.pinstack().arg("fetch").assert().success();
    let co = fx.checkout("up");
    Tree { fx, co }
}

impl Tree {
    /// What `pinstack audit` lists: path -> untracked, deleted or residual.
    fn pinstack(&self) -> (BTreeMap<String, String>, u64) {
        let out = self
            .fx
            .pinstack_std()
            .args(["audit", "--json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "audit --json: {e}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let repo = &v["repos"][0];
        let files = repo["files"]
            .as_array()
            .unwrap_or_else(|| panic!("no files in {v:#}"))
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["class"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (files, repo["ignored_skipped"].as_u64().unwrap())
    }

    /// What `git status` lists, in the same words: untracked (`??`, folders entered), deleted
    /// (no file on the disk), residual (anything else); and the ignored entries (`!!`).
    fn git(&self) -> (BTreeMap<String, String>, u64) {
        let text = git_bytes(
            &self.co,
            &[
                "-c",
                "status.renames=false",
                "-c",
                "core.quotepath=false",
                "--no-optional-locks",
                "status",
                "--porcelain",
                "-uall",
            ],
        );
        let text = String::from_utf8(text).unwrap();
        let mut files = BTreeMap::new();
        let mut listed_twice = Vec::new();
        for line in text.lines() {
            let (code, path) = line.split_at(3);
            // A path whose deletion is staged while the work tree has a file there again shows
            // twice (`D ` staged, then `??`): what the tree holds there is a change only if it
            // is not HEAD's file, which is what `git add -A` would record and the audit says.
            if code.starts_with("??") && files.contains_key(path) {
                listed_twice.push(path.to_owned());
                continue;
            }
            let class = if code.starts_with("??") {
                "untracked"
            } else if std::fs::symlink_metadata(self.co.join(path)).map_or(true, |m| m.is_dir()) {
                // No file there (a folder may have taken its place).
                "deleted"
            } else {
                "residual"
            };
            files.insert(path.to_owned(), class.to_owned());
        }
        for path in listed_twice {
            let head = git(&self.co, &["rev-parse", &format!("HEAD:{path}")]);
            if git(&self.co, &["hash-object", "--", &path]) == head {
                files.remove(&path);
            }
        }
        let ignored = git(
            &self.co,
            &["--no-optional-locks", "status", "--porcelain", "--ignored"],
        )
        .lines()
        .filter(|l| l.starts_with("!!"))
        .count() as u64;
        (files, ignored)
    }

    /// Asserts that pinstack and git see the same changes.
    fn agree(&self, after: &str) {
        let (p, pi) = self.pinstack();
        let (g, gi) = self.git();
        assert_eq!(
            p, g,
            "after {after}: pinstack (left) and git status (right)"
        );
        assert_eq!(pi, gi, "after {after}: ignored entries");
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.co.join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn git_do(&self, args: &[&str]) {
        git(&self.co, args);
    }

    /// Runs git, whatever it answers.
    fn git_try(&self, args: &[&str]) {
        let _ = std::process::Command::new("git")
            .args(args)
            .current_dir(&self.co)
            .output();
    }
}

/// The same content length, written right after the index: only the content tells.
fn same_size_edit(t: &Tree, rel: &str) {
    let before = std::fs::read(t.path(rel)).unwrap();
    let mut after = before.clone();
    after[0] = if after[0] == b'X' { b'Y' } else { b'X' };
    std::fs::write(t.path(rel), after).unwrap();
}

#[test]
fn every_kind_of_change_is_seen_as_git_sees_it() {
    let t = tree();
    t.agree("the fetch");
    // Refresh the index the way a person's `git status` does, then edit at once: the file and
    // the index share a timestamp, so the stat data cannot prove the file clean.
    t.git_do(&["update-index", "--refresh"]);
    same_size_edit(&t, "a/b/f1.txt");
    t.agree("a same-size edit");
    t.write("a/f0.txt", "longer content than before\n");
    t.agree("an edit");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path("d/f2.txt"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        t.agree("a mode change");
        // Git records the owner's execute bit only.
        std::fs::set_permissions(t.path("a/b/f0.txt"), std::fs::Permissions::from_mode(0o654))
            .unwrap();
        t.agree("a group-only execute bit");
    }
    std::fs::remove_file(t.path("f1.txt")).unwrap();
    t.agree("a deleted file");
    std::fs::remove_dir_all(t.path("a/b/c")).unwrap();
    t.agree("a deleted folder");
    t.write("d/new.txt", "new\n");
    t.write("e/g/h/deep.txt", "deep\n");
    t.write("e/other.txt", "other\n");
    t.agree("untracked files and folders");
    t.write("a/x.o", "object\n");
    t.write("build/out/y.bin", "built\n");
    t.write("e/g/z.o", "object in an untracked folder\n");
    t.agree("ignored files and folders");
    std::fs::remove_file(t.path("f2.txt")).unwrap();
    std::fs::create_dir(t.path("f2.txt")).unwrap();
    t.write("f2.txt/inner.txt", "a folder where a file was\n");
    t.agree("a file replaced by a folder");
    std::fs::remove_dir_all(t.path("d")).unwrap();
    t.write("d", "a file where a folder was\n");
    t.agree("a folder replaced by a file");
    #[cfg(unix)]
    {
        std::fs::remove_file(t.path("f0.txt")).unwrap();
        std::os::unix::fs::symlink("tool.sh", t.path("f0.txt")).unwrap();
        std::fs::remove_file(t.path("link")).unwrap();
        std::os::unix::fs::symlink("f2.txt", t.path("link")).unwrap();
        t.agree("symbolic links");
    }
    #[cfg(unix)]
    {
        // Git looks at files, links and folders only.
        let fifo = std::process::Command::new("mkfifo")
            .arg(t.path("a/pipe"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let _socket = std::os::unix::net::UnixListener::bind(t.path("e/g/socket")).unwrap();
        t.agree("a pipe and a socket");
    }
    let nested = t.path("nested");
    std::fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q", "."]);
    t.write("nested/n.txt", "n\n");
    t.agree("an untracked repository");
    t.write("a/staged.txt", "new in a folder HEAD has\n");
    t.git_do(&["add", "a/f0.txt", "e/other.txt", "a/staged.txt"]);
    t.git_do(&["rm", "-q", "a/f2.txt"]);
    t.agree("staged changes (the cache tree is gone)");
    t.git_do(&["update-index", "--index-version", "4"]);
    t.agree("an index of version 4");
    t.git_do(&["update-index", "--index-version", "3"]);
    t.git_do(&["add", "-N", "e/g/h/deep.txt"]);
    t.agree("an index of version 3 with an intent-to-add entry");
    t.git_do(&["reset", "-q", "--hard"]);
    t.git_do(&["clean", "-fdq"]);
    t.agree("a reset");
}

#[test]
fn a_same_size_edit_with_the_old_mtime_is_seen_as_git_sees_it() {
    // Both trust stat data that matches the index; putting the old mtime back still changes
    // the inode's ctime, which both compare.
    let t = tree();
    t.git_do(&["update-index", "--refresh"]);
    let rel = "a/b/f0.txt";
    let meta = std::fs::metadata(t.path(rel)).unwrap();
    same_size_edit(&t, rel);
    let f = std::fs::File::options()
        .write(true)
        .open(t.path(rel))
        .unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    t.agree("a same-size edit with the old mtime");
}

/// Git sees files, links and folders only: a pipe or a socket in a checkout is no local change,
/// so moving the pin is not refused.
#[cfg(unix)]
#[test]
fn a_pipe_or_a_socket_in_the_checkout_is_not_a_local_change() {
    let fx = Fixture::new();
    let up = fx.upstream("up");
    up.write("f.txt", "one\n");
    let first = up.commit("one");
    fx.pins(&[Pin::new("up", &up, &first)]);
    fx.pinstack().arg("fetch").assert().success();
    let co = fx.checkout("up");
    let fifo = std::process::Command::new("mkfifo")
        .arg(co.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let _socket = std::os::unix::net::UnixListener::bind(co.join("server.sock")).unwrap();
    assert_eq!(
        git(&co, &["status", "--porcelain"]),
        "",
        "git sees a clean tree"
    );
    up.write("f.txt", "two\n");
    let second = up.commit("two");
    fx.pins(&[Pin::new("up", &up, &second)]);
    fx.pinstack().arg("fetch").assert().success();
    assert_eq!(std::fs::read(co.join("f.txt")).unwrap(), b"two\n");
}

#[test]
fn a_staged_deletion_of_a_file_still_in_the_tree_is_seen_as_git_sees_it() {
    let t = tree();
    // The file is as HEAD has it: nothing changed in the tree.
    t.git_do(&["rm", "-q", "--cached", "f0.txt"]);
    t.agree("a staged deletion, the file untouched");
    // Written again with other content: a changed file.
    t.write("f0.txt", "other\n");
    t.agree("a staged deletion, the file changed");
}

/// A checkout whose pin holds a submodule entry (the submodule itself is never fetched).
fn with_submodule() -> Tree {
    let fx = Fixture::new();
    let up = fx.upstream("up");
    up.write("f.txt", "f\n").write(".gitignore", "*.o\n");
    up.git(&["add", "-A"]);
    let gitlink = format!("160000,{},sm", "1".repeat(40));
    up.git(&["update-index", "--add", "--cacheinfo", &gitlink]);
    // Committed as staged (`Upstream::commit` adds the work tree, which has no `sm`).
    up.git(&["commit", "-q", "-m", "a submodule"]);
    let commit = up.head();
    fx.pins(&[Pin::new("up", &up, &commit)]);
    fx.pinstack().arg("fetch").assert().success();
    let co = fx.checkout("up");
    // As after a person's `git reset`: an index with a cache tree.
    git(&co, &["reset", "-q", "--hard"]);
    Tree { fx, co }
}

#[test]
fn a_submodule_replaced_by_a_file_is_seen_as_git_sees_it() {
    let t = with_submodule();
    std::fs::create_dir_all(t.path("sm")).unwrap();
    t.agree("the fetch");
    std::fs::remove_dir_all(t.path("sm")).unwrap();
    t.write("sm", "a file where the submodule was\n");
    t.agree("a file in the submodule's place");
}

#[test]
fn a_submodule_made_a_folder_of_the_index_is_seen_as_git_sees_it() {
    let t = with_submodule();
    // The submodule becomes a plain folder of the index, holding ignored files too.
    t.git_do(&["update-index", "--force-remove", "sm"]);
    t.write("sm/a.txt", "a\n");
    t.git_do(&["add", "sm/a.txt"]);
    t.write("sm/x.o", "object\n");
    t.write("sm/y.o", "object\n");
    // audit explains files, so it leaves out the submodule entry itself (git's `D  sm`); the
    // files under it and the ignored entries are what the status must get right.
    let (files, ignored) = t.pinstack();
    let (git_files, git_ignored) = t.git();
    assert_eq!(
        files.get("sm/a.txt"),
        git_files.get("sm/a.txt"),
        "{files:?}"
    );
    assert_eq!(ignored, git_ignored, "ignored entries under sm/");
}

/// One edit of a random sequence.
#[derive(Debug, Clone)]
enum Edit {
    Write(usize, bool),
    Remove(usize),
    Untracked(usize),
    Stage(usize),
    Refresh,
    Version(u8),
}

/// The tracked files of [`tree`], and a few paths that are not.
const FILES: [&str; 8] = [
    "f0.txt",
    "a/f1.txt",
    "a/b/f2.txt",
    "a/b/c/f0.txt",
    "d/f1.txt",
    "tool.sh",
    "d/new.txt",
    "a/b/new.o",
];

fn apply_edit(t: &Tree, e: &Edit) {
    let rel = |i: &usize| FILES[i % FILES.len()];
    match e {
        Edit::Write(i, same_size) => {
            if t.path(rel(i)).is_file() && *same_size {
                same_size_edit(t, rel(i));
            } else {
                t.write(rel(i), "written by the test\n");
            }
        }
        Edit::Remove(i) => {
            let _ = std::fs::remove_file(t.path(rel(i)));
        }
        Edit::Untracked(i) => t.write(&format!("u{i}/file.txt"), "u\n"),
        // Either may fail (an ignored or vanished path): the tree is then as it was.
        Edit::Stage(i) => t.git_try(&["add", "-A", "--", rel(i)]),
        Edit::Refresh => t.git_try(&["update-index", "-q", "--refresh"]),
        Edit::Version(v) => t.git_do(&["update-index", "--index-version", &v.to_string()]),
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..8usize, any::<bool>()).prop_map(|(i, s)| Edit::Write(i, s)),
        (0..8usize).prop_map(Edit::Remove),
        (0..3usize).prop_map(Edit::Untracked),
        (0..8usize).prop_map(Edit::Stage),
        Just(Edit::Refresh),
        (2..=4u8).prop_map(Edit::Version),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any sequence of edits, staging, index refreshes and index versions: pinstack lists what
    /// git lists.
    #[test]
    fn random_edits_are_seen_as_git_sees_them(edits in prop::collection::vec(edit(), 1..8)) {
        let t = tree();
        for e in &edits {
            apply_edit(&t, e);
        }
        let (p, pi) = t.pinstack();
        let (g, gi) = t.git();
        prop_assert_eq!(p, g, "after {:?}", edits);
        prop_assert_eq!(pi, gi, "ignored, after {:?}", edits);
    }
}
