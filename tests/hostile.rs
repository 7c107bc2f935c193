//! Hostile and corrupt bundles: each is refused with its exit code and a message naming the
//! bundle, by `apply` (leaving the checkout exactly as it was) and by `check`.

use crate::harness::{Fixture, Pin, Upstream, numbered, pipe, snapshot};

struct Setup {
    fx: Fixture,
    up: Upstream,
    base: String,
}

fn setup() -> Setup {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", numbered("a", 5))
        .write("dir/b.txt", numbered("b", 5));
    let base = up.commit("base");
    fx.pins(&[Pin::new("app", &up, &base)]);
    fx.pinstack().arg("fetch").assert().code(0);
    Setup { fx, up, base }
}

/// gzip (coreutils, no name, no time) then base64, as a bundle is made by hand.
fn pack(diff: &[u8]) -> Vec<u8> {
    pipe("base64", &[], &pipe("gzip", &["-n", "-c"], diff))
}

impl Setup {
    /// Pins `encoded` as the app's bundle and asserts that apply exits `code` naming the bundle
    /// and `needle`, that the checkout is untouched, and that check reports `status`.
    fn refused(&self, name: &str, encoded: &[u8], diff: Option<&[u8]>, code: i32, needle: &str) {
        let status = if code == 1 {
            "hash_mismatch"
        } else {
            "invalid"
        };
        self.refused_as(name, encoded, diff, code, needle, status);
    }

    fn refused_as(
        &self,
        name: &str,
        encoded: &[u8],
        diff: Option<&[u8]>,
        code: i32,
        needle: &str,
        status: &str,
    ) {
        let fx = &self.fx;
        let b = fx.raw_bundle(name, encoded, diff);
        fx.pins(&[Pin::new("app", &self.up, &self.base).patch(b.entry())]);
        let checkout = fx.checkout("app");
        let before = snapshot(&checkout);
        let err = fx.stderr(&["apply"], code);
        assert!(
            err.contains(&b.path),
            "{name}: the bundle is not named: {err}"
        );
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
        assert_eq!(
            snapshot(&checkout),
            before,
            "{name}: apply wrote into the checkout"
        );
        assert_eq!(fx.worktree_tree(&checkout), self.up.tree(&self.base));
        let v = fx.json(&["check"], code);
        let r = &v["repos"][0]["bundles"][0];
        assert_eq!(v["ok"], false, "{name}: {v:#}");
        assert_eq!(r["status"], status, "{name}: {v:#}");
        assert!(
            r["detail"].as_str().unwrap().contains(needle),
            "{name}: {v:#}"
        );
        assert_eq!(
            snapshot(&checkout),
            before,
            "{name}: check wrote into the checkout"
        );
    }
}

fn valid_diff(s: &Setup) -> Vec<u8> {
    s.up.write("a.txt", numbered("a", 5).replace("a 2\n", "a two\n"));
    let tip = s.up.commit("tip");
    let diff = s.up.diff(&s.base, &tip);
    s.up.restore(&s.base);
    diff
}

#[test]
fn bad_base64() {
    let s = setup();
    s.refused(
        "b64",
        b"H4sI!!!! this is not base64 ~~~\n",
        None,
        2,
        "base64",
    );
}

#[test]
fn truncated_gzip() {
    let s = setup();
    let diff = valid_diff(&s);
    let gz = pipe("gzip", &["-n", "-c"], &diff);
    let truncated = pipe("base64", &[], &gz[..gz.len() - 12]);
    s.refused("truncated", &truncated, Some(&diff), 2, "gzip");
}

#[test]
fn corrupt_gzip() {
    let s = setup();
    let diff = valid_diff(&s);
    let mut gz = pipe("gzip", &["-n", "-c"], &diff);
    let n = gz.len();
    gz[n - 6] ^= 0x5a; // the CRC32 of the trailer
    s.refused("bad-crc", &pipe("base64", &[], &gz), Some(&diff), 2, "gzip");
    let mut gz = pipe("gzip", &["-n", "-c"], &diff);
    gz[12] ^= 0xff; // inside the deflate stream
    s.refused(
        "bad-deflate",
        &pipe("base64", &[], &gz),
        Some(&diff),
        2,
        "gzip",
    );
}

#[test]
fn concatenated_gzip_members_are_read_in_full() {
    let s = setup();
    let diff = valid_diff(&s);
    let half = diff.len() / 2;
    s.fx.write("one.part", &diff[..half]);
    s.fx.write("two.part", &diff[half..]);
    let encoded = s
        .fx
        .sh("gzip -n -c one.part > one.gz && gzip -n -c two.part > two.gz && cat one.gz two.gz | base64");
    let b = s.fx.raw_bundle("two-members", &encoded, Some(&diff));
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(b.entry())]);
    let want = s.fx.oracle_tree(&s.up, &s.base, &[(&diff, None)]);
    s.fx.pinstack().arg("apply").assert().code(0);
    assert_eq!(s.fx.worktree_tree(&s.fx.checkout("app")), want);
    let v = s.fx.json(&["check"], 0);
    assert_eq!(v["repos"][0]["tree"], want.as_str());
}

#[test]
fn wrong_hash() {
    let s = setup();
    let diff = valid_diff(&s);
    let encoded = pack(&diff);
    // The bundle is fine, but it is not the one pinned.
    let mut other = encoded.clone();
    other.extend_from_slice(b"\n");
    let b = s.fx.raw_bundle("pinned", &other, Some(&diff));
    s.fx.write(&b.path, &encoded);
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(b.entry())]);
    let checkout = s.fx.checkout("app");
    let before = snapshot(&checkout);
    let err = s.fx.stderr(&["apply"], 1);
    assert!(
        err.contains(&b.path) && err.contains("sha256 mismatch"),
        "{err}"
    );
    assert_eq!(snapshot(&checkout), before);
    // A wrong diff_sha256 is refused the same way.
    s.refused(
        "wrong-diff-sha",
        &encoded,
        Some(b"another diff"),
        1,
        "diff_sha256 mismatch",
    );
}

#[test]
fn empty_bundles() {
    let s = setup();
    s.refused("blank", b"\n\n", None, 2, "nothing");
    let empty_gzip = s.fx.sh("printf '' | gzip -n | base64");
    s.refused("empty-gzip", &empty_gzip, Some(b""), 2, "nothing");
    let no_change = b"diff --git a/a.txt b/a.txt\nindex 1234567..1234567 100644\n";
    s.refused(
        "no-change",
        &pack(no_change),
        Some(no_change),
        2,
        "changes nothing",
    );
}

#[test]
fn not_a_diff() {
    let s = setup();
    let text = b"Hello,\nthis is a letter, not a diff.\n";
    s.refused("letter", &pack(text), Some(text), 2, "not a git diff");
    let plain = b"--- a.txt\n+++ a.txt\n@@ -1 +1 @@\n-a 1\n+a one\n";
    s.refused("plain", &pack(plain), Some(plain), 2, "diff --git");
    let binary_without_data = b"diff --git a/x.bin b/x.bin\nindex 1234567..89abcde 100644\nBinary files a/x.bin and b/x.bin differ\n";
    s.refused(
        "no-binary-data",
        &pack(binary_without_data),
        Some(binary_without_data),
        2,
        "--binary",
    );
}

#[test]
fn gzip_bomb() {
    let s = setup();
    let bomb = s.fx.sh("head -c 300M /dev/zero | gzip -1 -n | base64");
    assert!(bomb.len() < 2 * 1024 * 1024, "the bomb itself is small");
    s.refused("bomb", &bomb, None, 2, "gzip bomb");
}

fn new_file(path_a: &str, path_b: &str) -> String {
    format!(
        "diff --git {path_a} {path_b}\nnew file mode 100644\n--- /dev/null\n+++ {path_b}\n@@ -0,0 +1 @@\n+pwned\n"
    )
}

#[test]
fn path_traversal() {
    let s = setup();
    for (name, diff) in [
        ("dotdot", new_file("a/../x", "b/../x")),
        ("deep-dotdot", new_file("a/dir/../../x", "b/dir/../../x")),
        (
            "quoted-dotdot",
            new_file("\"a/../\\170\"", "\"b/../\\170\""),
        ),
    ] {
        s.refused(name, &pack(diff.as_bytes()), Some(diff.as_bytes()), 2, "..");
    }
    let rename = "diff --git a/a.txt b/../a.txt\nsimilarity index 100%\nrename from a.txt\nrename to ../a.txt\n";
    s.refused(
        "rename-out",
        &pack(rename.as_bytes()),
        Some(rename.as_bytes()),
        2,
        "..",
    );
    assert!(!s.fx.path("workspace/src/x").exists());
    assert!(!s.fx.path("workspace/x").exists());
}

#[test]
fn absolute_paths() {
    let s = setup();
    let target = s.fx.path("outside.txt").display().to_string();
    for (name, diff) in [
        ("abs", new_file("a//etc/x", "b//etc/x")),
        ("abs-plain", new_file(&format!("a/{target}"), &target)),
    ] {
        s.refused(
            name,
            &pack(diff.as_bytes()),
            Some(diff.as_bytes()),
            2,
            "absolute",
        );
    }
    assert!(!s.fx.path("outside.txt").exists());
}

#[test]
fn writes_into_git() {
    let s = setup();
    let config = "diff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-[core]\n+[core] hooksPath = /tmp/evil\n";
    s.refused(
        "git-config",
        &pack(config.as_bytes()),
        Some(config.as_bytes()),
        2,
        ".git",
    );
    for (name, diff) in [
        (
            "git-hook",
            new_file("a/.git/hooks/post-checkout", "b/.git/hooks/post-checkout"),
        ),
        (
            "nested-git",
            new_file("a/dir/.GIT/config", "b/dir/.GIT/config"),
        ),
    ] {
        s.refused(
            name,
            &pack(diff.as_bytes()),
            Some(diff.as_bytes()),
            2,
            ".git",
        );
    }
}

#[test]
fn a_symlink_then_a_write_through_it() {
    let s = setup();
    let outside = s.fx.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let diff = format!(
        "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+{}\n\\ No newline at end of file\n{}",
        outside.display(),
        new_file("a/link/evil.txt", "b/link/evil.txt")
    );
    s.refused(
        "symlink",
        &pack(diff.as_bytes()),
        Some(diff.as_bytes()),
        2,
        "symbolic link",
    );
    assert!(!outside.join("evil.txt").exists());
    assert!(!s.fx.checkout("app").join("link").exists());
    // pack refuses it too.
    s.fx.write("symlink.diff", &diff);
    let err = s.fx.stderr(&["bundle", "pack", "symlink.diff"], 2);
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_write_through_a_symlink_of_the_pin() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    let outside = fx.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    up.write("a.txt", "a\n");
    std::os::unix::fs::symlink(&outside, up.path.join("link")).unwrap();
    let base = up.commit("a link to outside");
    let diff = new_file("a/link/evil.txt", "b/link/evil.txt");
    let b = fx.raw_bundle("through", &pack(diff.as_bytes()), Some(diff.as_bytes()));
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry())]);
    let out = fx
        .pinstack()
        .arg("apply")
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("symbolic link") && err.contains(&b.path),
        "{err}"
    );
    assert!(!outside.join("evil.txt").exists());
    let v = fx.json(&["check"], 1);
    assert_eq!(v["repos"][0]["bundles"][0]["diagnosis"], "symlink", "{v:#}");
    assert_eq!(v["repos"][0]["bundles"][0]["file"], "link/evil.txt");
}
