//! `pinstack check`: every diagnosis in its JSON form, the tree lock, JUnit, offline operation,
//! and the promise never to write into a workspace checkout.

use serde_json::Value;

use crate::harness::{Bundle, Fixture, Pin, Upstream, git_ok, numbered, parse_xml, snapshot};

/// An upstream with `file.txt`; `base` is the commit the bundle was made on, `fixed` the commit
/// that holds the bundle's change (line 20 edited).
struct Scenario {
    fx: Fixture,
    up: Upstream,
    base: String,
    fixed: String,
    diff: Vec<u8>,
    bundle: Bundle,
}

fn scenario() -> Scenario {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("file.txt", numbered("line", 30))
        .write("other.txt", "other\n");
    let base = up.commit("base");
    up.write(
        "file.txt",
        numbered("line", 30).replace("line 20\n", "line 20 patched\n"),
    );
    let fixed = up.commit("fixed upstream");
    let diff = up.diff(&base, &fixed);
    let bundle = fx.bundle("fix", &diff);
    Scenario {
        fx,
        up,
        base,
        fixed,
        diff,
        bundle,
    }
}

impl Scenario {
    /// A new upstream commit whose files are `base`'s, changed by `edit`.
    fn commit_from_base(&self, edit: impl FnOnce(&Upstream)) -> String {
        self.up.restore(&self.base);
        edit(&self.up);
        self.up.commit("moved pin")
    }

    /// Pins the bundle onto `commit`, runs `check --json` expecting `code`, and returns the one
    /// bundle's result after checking the report's shape.
    fn check_at(&self, commit: &str, code: i32) -> Value {
        self.fx
            .pins(&[Pin::new("app", &self.up, commit).patch(self.bundle.entry())]);
        let v = self.fx.json(&["check"], code);
        assert_eq!(v["ok"], code == 0, "{v:#}");
        let repo = &v["repos"][0];
        assert_eq!(repo["name"], "app");
        assert_eq!(repo["commit"], commit);
        assert_eq!(repo["bundles"][0]["bundle"], self.bundle.path.as_str());
        if code != 0 {
            assert!(repo["tree"].is_null(), "no tree when a bundle fails: {v:#}");
        }
        repo["bundles"][0].clone()
    }
}

fn assert_failure(b: &Value, diagnosis: &str, file: &str, hunk: Option<u64>) {
    assert_eq!(b["status"], "does_not_apply", "{b:#}");
    assert_eq!(b["diagnosis"], diagnosis, "{b:#}");
    assert_eq!(b["file"], file, "{b:#}");
    match hunk {
        Some(h) => assert_eq!(b["hunk"], h, "{b:#}"),
        None => assert!(b["hunk"].is_null(), "{b:#}"),
    }
    assert!(!b["detail"].as_str().unwrap().is_empty(), "{b:#}");
}

#[test]
fn a_bundle_that_applies_reports_git_apply_tree() {
    let s = scenario();
    let b = s.check_at(&s.base, 0);
    assert_eq!(b["status"], "ok");
    assert!(b["diagnosis"].is_null());
    let v = s.fx.json(&["check"], 0);
    let want = s.fx.oracle_tree(&s.up, &s.base, &[(&s.diff, None)]);
    assert_eq!(v["repos"][0]["tree"], want.as_str());
    assert_eq!(want, s.up.tree(&s.fixed));
    assert_eq!(v["repos"][0]["tree_matches_lock"], true);
    let text = s.fx.stdout(&["check"], 0);
    assert!(text.contains("all 1 repo(s) as pinned"), "{text}");
}

#[test]
fn offset_when_lines_were_inserted_above_the_hunk() {
    let s = scenario();
    let pin = s.commit_from_base(|up| {
        up.write(
            "file.txt",
            format!("{}{}", numbered("new header", 5), numbered("line", 30)),
        );
    });
    let b = s.check_at(&pin, 1);
    assert_failure(&b, "offset", "file.txt", Some(1));
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("5 lines"), "{detail}");
    assert!(detail.contains("regenerate"), "{detail}");
}

#[test]
fn already_applied_when_the_pin_holds_the_change() {
    let s = scenario();
    let b = s.check_at(&s.fixed, 1);
    assert_eq!(b["diagnosis"], "already_applied", "{b:#}");
    assert_eq!(b["file"], "file.txt");
    assert!(
        b["detail"].as_str().unwrap().contains("already there"),
        "{b:#}"
    );
}

#[test]
fn missing_file_at_the_pin() {
    let s = scenario();
    let pin = s.commit_from_base(|up| {
        up.remove("file.txt");
    });
    let b = s.check_at(&pin, 1);
    assert_failure(&b, "missing_file", "file.txt", None);
    assert!(b["detail"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn context_changed_around_the_hunk() {
    let s = scenario();
    let pin = s.commit_from_base(|up| {
        up.write(
            "file.txt",
            numbered("line", 30).replace("line 18\n", "line 18 rewritten upstream\n"),
        );
    });
    let b = s.check_at(&pin, 1);
    assert_failure(&b, "context", "file.txt", Some(1));
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("line 18"), "{detail}");
}

/// A bundle made on `base` (files written by `base`, changed by `bundle`), checked on a pin
/// made from `base` by `pin`. Returns the fixture, the upstream, the pin, the diff and the
/// bundle's result (the check exits 1).
fn checked_on_a_moved_pin(
    base: impl Fn(&Upstream),
    bundle: impl Fn(&Upstream),
    pin: impl Fn(&Upstream),
) -> (Fixture, Upstream, String, Vec<u8>, Value) {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    base(&up);
    let made_on = up.commit("base");
    bundle(&up);
    let tip = up.commit("the bundle's change");
    let diff = up.diff(&made_on, &tip);
    let b = fx.bundle("moved", &diff);
    up.restore(&made_on);
    pin(&up);
    let pin = up.commit("upstream moved on");
    fx.pins(&[Pin::new("app", &up, &pin).patch(b.entry())]);
    let v = fx.json(&["check"], 1);
    let result = v["repos"][0]["bundles"][0].clone();
    (fx, up, pin, diff, result)
}

#[test]
fn the_failing_hunk_is_named() {
    let (.., r) = checked_on_a_moved_pin(
        |up| {
            up.write("f.txt", numbered("l", 60));
        },
        |up| {
            let text = numbered("l", 60)
                .replace("l 5\n", "l 5 one\n")
                .replace("l 30\n", "l 30 two\n")
                .replace("l 55\n", "l 55 three\n");
            up.write("f.txt", text);
        },
        |up| {
            up.write(
                "f.txt",
                numbered("l", 60).replace("l 31\n", "l 31 moved on\n"),
            );
        },
    );
    assert_failure(&r, "context", "f.txt", Some(2));
    assert!(r["detail"].as_str().unwrap().contains("hunk 2"), "{r:#}");
}

#[test]
fn every_hunk_applies_but_the_file_is_not_the_bundles_preimage() {
    // The pin differs from the bundle's base only far from the hunk: every hunk applies, and
    // only the blob id on the bundle's `index` line shows the file is not the one it was made
    // from.
    let s = scenario();
    let pin = s.commit_from_base(|up| {
        up.write(
            "file.txt",
            numbered("line", 30).replace("line 2\n", "line 2 edited upstream\n"),
        );
    });
    let b = s.check_at(&pin, 1);
    assert_failure(&b, "postimage", "file.txt", None);
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("index line"), "{detail}");
    // git applies it (with no fuzz needed); pinstack refuses to call the result pin + bundle.
    let clone = s.fx.clone_at(&s.up, &pin, "git-side");
    s.fx.git_apply(&clone, &s.diff, &["--check"]);
}

#[test]
fn a_deletion_of_a_file_that_changed_at_the_pin_does_not_apply() {
    let (fx, up, pin, diff, r) = checked_on_a_moved_pin(
        |up| {
            up.write("gone.txt", numbered("g", 5))
                .write("keep.txt", "k\n");
        },
        |up| {
            up.remove("gone.txt");
        },
        |up| {
            up.write("gone.txt", numbered("g", 6));
        },
    );
    assert_eq!(r["status"], "does_not_apply", "{r:#}");
    assert_eq!(r["diagnosis"], "context", "{r:#}");
    assert_eq!(r["file"], "gone.txt", "{r:#}");
    // git refuses it too.
    let clone = fx.clone_at(&up, &pin, "git-side");
    let file = fx.write("delete.diff", diff);
    assert!(!git_ok(
        &clone,
        &["apply", "--check", &file.display().to_string()]
    ));
}

#[test]
fn a_file_where_the_pin_has_a_folder_does_not_apply() {
    let (.., r) = checked_on_a_moved_pin(
        |up| {
            up.write("a.txt", "a\n");
        },
        |up| {
            up.write("thing", "a file\n");
        },
        |up| {
            up.write("thing/inside.txt", "x\n");
        },
    );
    assert_eq!(r["status"], "does_not_apply", "{r:#}");
    assert!(r["detail"].as_str().unwrap().contains("thing"), "{r:#}");
    assert_eq!(r["diagnosis"], "exists", "{r:#}");
    assert_eq!(r["file"], "thing", "{r:#}");
}

#[test]
fn a_file_below_what_the_pin_has_as_a_file_does_not_apply() {
    let (.., r) = checked_on_a_moved_pin(
        |up| {
            up.write("a.txt", "a\n");
        },
        |up| {
            up.write("thing/inside.txt", "x\n");
        },
        |up| {
            up.write("thing", "a file\n");
        },
    );
    assert_eq!(r["status"], "does_not_apply", "{r:#}");
    assert_eq!(r["diagnosis"], "exists", "{r:#}");
    assert_eq!(r["file"], "thing/inside.txt", "{r:#}");
    assert!(r["detail"].as_str().unwrap().contains("is a file"), "{r:#}");
}

/// An upstream with `sub/pkg/mod.py` (and a root `src/app.py`), and diffs of both.
fn base_dir_scenario() -> (Fixture, Upstream, String, Vec<u8>, Vec<u8>) {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("sub/pkg/mod.py", numbered("mod", 10))
        .write("src/app.py", numbered("app", 10));
    let base = up.commit("base");
    up.write(
        "sub/pkg/mod.py",
        numbered("mod", 10).replace("mod 4\n", "mod four\n"),
    )
    .write(
        "src/app.py",
        numbered("app", 10).replace("app 4\n", "app four\n"),
    );
    let tip = up.commit("tip");
    let relative = up.diff_relative("sub/pkg", &base, &tip);
    let rooted = up.diff_relative("src", &base, &tip);
    let rooted = String::from_utf8(rooted)
        .unwrap()
        .replace("a/app.py", "a/src/app.py")
        .replace("b/app.py", "b/src/app.py")
        .into_bytes();
    (fx, up, base, relative, rooted)
}

#[test]
fn base_dir_missing() {
    let (fx, up, base, relative, _) = base_dir_scenario();
    let b = fx.bundle("relative", &relative);
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry())]);
    let v = fx.json(&["check"], 1);
    let r = &v["repos"][0]["bundles"][0];
    assert_failure(r, "base_dir", "mod.py", None);
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("base_dir: sub/pkg"), "{detail}");

    // With base_dir it applies, as `git apply --directory` does.
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry().base_dir("sub/pkg"))]);
    let v = fx.json(&["check"], 0);
    let want = fx.oracle_tree(&up, &base, &[(&relative, Some("sub/pkg"))]);
    assert_eq!(v["repos"][0]["tree"], want.as_str());
}

#[test]
fn base_dir_where_none_belongs() {
    let (fx, up, base, _, rooted) = base_dir_scenario();
    let b = fx.bundle("rooted", &rooted);
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry().base_dir("src"))]);
    let v = fx.json(&["check"], 1);
    let r = &v["repos"][0]["bundles"][0];
    assert_failure(r, "base_dir", "src/src/app.py", None);
    assert!(
        r["detail"].as_str().unwrap().contains("src/app.py does"),
        "{r:#}"
    );
}

#[test]
fn hash_mismatch_of_either_hash() {
    let s = scenario();
    assert_hash_mismatches(&s.fx, &s.up, &s.base, &s.bundle);
}

/// Pinned with either hash wrong, the bundle is reported as a hash mismatch naming the hash.
fn assert_hash_mismatches(fx: &Fixture, up: &Upstream, commit: &str, bundle: &Bundle) {
    let wrong = "0".repeat(64);
    for which in ["sha256", "diff_sha256"] {
        let mut entry = bundle.entry();
        if which == "sha256" {
            entry.sha256 = wrong.clone();
        } else {
            entry.diff_sha256 = wrong.clone();
        }
        fx.pins(&[Pin::new("app", up, commit).patch(entry)]);
        let v = fx.json(&["check"], 1);
        let b = &v["repos"][0]["bundles"][0];
        assert_eq!(v["ok"], false);
        assert_eq!(b["status"], "hash_mismatch", "{b:#}");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{which} mismatch")), "{detail}");
        assert!(detail.contains(&wrong), "{detail}");
        // The human report says so too.
        let text = fx.stdout(&["check"], 1);
        assert!(text.contains("HASH MISMATCH"), "{text}");
    }
}

#[test]
fn a_large_bundle_is_verified_and_applied_like_a_small_one() {
    // Large enough that the hashes are computed alongside decoding and parsing.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let base = up.commit("base");
    let text: String = (0..30_000u64)
        .map(|i| format!("{i} {:016x}\n", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    up.write("big.txt", text).write("a.txt", "a changed\n");
    let tip = up.commit("a large change");
    let diff = up.diff(&base, &tip);
    let bundle = fx.bundle("large", &diff);
    assert!(diff.len() > 512 * 1024, "{}", diff.len());
    assert!(std::fs::metadata(fx.path(&bundle.path)).unwrap().len() > 128 * 1024);
    fx.pins(&[Pin::new("app", &up, &base).patch(bundle.entry())]);
    let v = fx.json(&["check"], 0);
    assert_eq!(v["repos"][0]["tree"], up.tree(&tip).as_str(), "{v:#}");
    let show = fx.json(&["bundle", "show", &bundle.path], 0);
    assert_eq!(show["sha256"], bundle.sha256.as_str(), "{show:#}");
    assert_eq!(show["diff_sha256"], bundle.diff_sha256.as_str(), "{show:#}");
    assert_eq!(show["files"].as_array().map(Vec::len), Some(2), "{show:#}");
    assert_hash_mismatches(&fx, &up, &base, &bundle);
}

#[test]
fn a_locked_tree_that_differs() {
    let s = scenario();
    let stale = s.up.tree(&s.base);
    s.fx.pins(&[Pin::new("app", &s.up, &s.base)
        .patch(s.bundle.entry())
        .tree(&stale)]);
    let v = s.fx.json(&["check"], 1);
    let r = &v["repos"][0];
    let want = s.fx.oracle_tree(&s.up, &s.base, &[(&s.diff, None)]);
    assert_eq!(v["ok"], false);
    assert_eq!(r["ok"], false);
    assert_eq!(r["tree_matches_lock"], false);
    assert_eq!(r["tree"], want.as_str());
    assert_eq!(r["locked_tree"], stale.as_str());
    assert_eq!(r["bundles"][0]["status"], "ok");
    let text = s.fx.stdout(&["check"], 1);
    assert!(text.contains("TREE DIFFERS"), "{text}");

    s.fx.pins(&[Pin::new("app", &s.up, &s.base)
        .patch(s.bundle.entry())
        .tree(&want)]);
    let v = s.fx.json(&["check"], 0);
    assert_eq!(v["repos"][0]["tree_matches_lock"], true);
}

#[test]
fn later_bundles_are_skipped_after_a_failure_and_other_repos_still_checked() {
    let s = scenario();
    let lib = s.fx.upstream("lib");
    lib.write("lib.txt", "lib\n");
    let lib_base = lib.commit("lib");
    lib.write("lib.txt", "lib2\n");
    let lib_tip = lib.commit("lib2");
    let lib_bundle = s.fx.bundle("lib", &lib.diff(&lib_base, &lib_tip));
    s.fx.pins(&[
        Pin::new("app", &s.up, &s.fixed)
            .patch(s.bundle.entry())
            .patch(s.bundle.entry()),
        Pin::new("lib", &lib, &lib_base).patch(lib_bundle.entry()),
    ]);
    let v = s.fx.json(&["check"], 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["repos"][0]["ok"], false);
    assert_eq!(v["repos"][0]["bundles"][0]["status"], "does_not_apply");
    assert_eq!(v["repos"][0]["bundles"][1]["status"], "skipped");
    assert_eq!(v["repos"][1]["ok"], true);
    assert_eq!(v["repos"][1]["tree"], lib.tree(&lib_tip).as_str());
    // Naming a repo checks only that one.
    let v = s.fx.json(&["check", "lib"], 0);
    assert_eq!(v["repos"].as_array().unwrap().len(), 1);
    let err = s.fx.stderr(&["check", "nope"], 2);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn junit_report_is_well_formed_and_names_the_failing_bundle() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 10));
    let base = up.commit("base");
    up.write(
        "f.txt",
        numbered("f", 10).replace("f 3\n", "f <3> & \"q\"\n"),
    );
    let tip = up.commit("tip");
    let diff = up.diff(&base, &tip);
    // A label that needs escaping, and one bundle that fails.
    let good = fx.bundle("a&b<c>'d'", &diff);
    let bad = fx.bundle("again", &diff);
    fx.pins(&[Pin::new("app", &up, &base)
        .patch(good.entry())
        .patch(bad.entry())
        .tree(&up.tree(&base))]);
    fx.pinstack()
        .args(["check", "--junit", "reports/junit.xml"])
        .assert()
        .code(1);
    let xml = String::from_utf8(fx.read("reports/junit.xml")).unwrap();
    let root = parse_xml(&xml);
    assert_eq!(root.name, "testsuites");
    assert_eq!(root.attr("tests"), Some("3"), "{xml}");
    assert_eq!(root.attr("failures"), Some("2"), "{xml}");
    let mut cases = Vec::new();
    root.find_all("testcase", &mut cases);
    let case = |name: &str| {
        *cases
            .iter()
            .find(|c| c.attr("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name} in {xml}"))
    };
    assert!(case(&good.path).children.is_empty(), "{xml}");
    let failure = &case(&bad.path).children[0];
    assert_eq!(failure.name, "failure");
    assert_eq!(failure.attr("type"), Some("does_not_apply"));
    assert!(failure.attr("message").unwrap().contains("already there"));
    let lock = &case("tree lock").children[0];
    assert_eq!(lock.attr("type"), Some("tree_differs"));

    // A clean run writes a report without failures.
    fx.pins(&[Pin::new("app", &up, &base).patch(good.entry())]);
    fx.pinstack()
        .args(["check", "--junit", "reports/junit.xml"])
        .assert()
        .code(0);
    let root = parse_xml(&String::from_utf8(fx.read("reports/junit.xml")).unwrap());
    let mut failures = Vec::new();
    root.find_all("failure", &mut failures);
    assert!(failures.is_empty());
    assert_eq!(root.attr("failures"), Some("0"));
}

#[test]
fn check_creates_no_workspace() {
    let s = scenario();
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(s.bundle.entry())]);
    s.fx.json(&["check"], 0);
    s.fx.json(&["lock"], 0);
    assert!(!s.fx.path("workspace").exists());
    assert!(
        s.fx.path("cache").exists(),
        "check keeps its objects in the cache"
    );
}

#[test]
fn check_never_writes_into_a_checkout() {
    let s = scenario();
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(s.bundle.entry())]);
    s.fx.pinstack().arg("apply").assert().code(0);
    let checkout = s.fx.checkout("app");
    let tree = s.fx.worktree_tree(&checkout);
    let before = snapshot(&checkout);
    s.fx.json(&["check"], 0);
    // Nor into its object cache, once the pin is there: the result is computed, not stored.
    let cache = snapshot(&s.fx.path("cache"));
    s.fx.json(&["check"], 0);
    s.fx.json(&["check", "--offline"], 0);
    assert_eq!(
        snapshot(&s.fx.path("cache")),
        cache,
        "check wrote into its cache"
    );
    // A failing check (the pin holds the change) reads the same checkout.
    s.fx.pins(&[Pin::new("app", &s.up, &s.fixed).patch(s.bundle.entry())]);
    s.fx.json(&["check"], 1);
    assert_eq!(snapshot(&checkout), before, "check wrote into the checkout");
    assert_eq!(s.fx.worktree_tree(&checkout), tree);
}

#[test]
fn offline_check_reads_the_workspace_checkout() {
    let s = scenario();
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(s.bundle.entry())]);
    s.fx.pinstack().arg("fetch").assert().code(0);
    std::fs::rename(&s.up.path, s.fx.path("upstream/moved-away")).unwrap();
    let before = snapshot(&s.fx.checkout("app"));
    let v = s.fx.json(&["check", "--offline"], 0);
    let want = s.fx.oracle_tree(
        &Upstream {
            name: "app".to_owned(),
            path: s.fx.path("upstream/moved-away"),
        },
        &s.base,
        &[(&s.diff, None)],
    );
    assert_eq!(v["repos"][0]["tree"], want.as_str());
    assert_eq!(snapshot(&s.fx.checkout("app")), before);
    // Without --offline the unreachable upstream is an error, not a silent success.
    s.fx.pinstack().arg("check").assert().failure();
}

#[test]
fn offline_check_reads_the_cache() {
    let s = scenario();
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(s.bundle.entry())]);
    let online = s.fx.json(&["check"], 0);
    std::fs::remove_dir_all(&s.up.path).unwrap();
    let offline = s.fx.json(&["check", "--offline"], 0);
    assert_eq!(offline, online);
    assert!(!s.fx.path("workspace").exists());
}

#[test]
fn offline_check_without_the_commit_fails_clearly() {
    let s = scenario();
    s.fx.pins(&[Pin::new("app", &s.up, &s.base).patch(s.bundle.entry())]);
    let err = s.fx.stderr(&["check", "--offline"], 3);
    assert!(err.contains(&s.base), "{err}");
    assert!(err.contains("--offline"), "{err}");
    assert!(!s.fx.path("workspace").exists());
    // Nothing was fetched behind the user's back.
    let cached = std::fs::read_dir(s.fx.path("cache/git")).map_or(0, |d| d.count());
    assert_eq!(cached, 0, "--offline fetched into the cache");
}
