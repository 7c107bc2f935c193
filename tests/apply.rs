//! `pinstack apply`: for every kind of change, the checkout equals what `git apply` makes of the
//! same diff; re-applying changes nothing; local changes are refused, or rescued with --force.

use crate::harness::{ALLOW_FILE_PROTOCOL, Fixture, Pin, git, git_bytes, numbered, pipe, snapshot};

#[test]
fn binary_files_new_and_modified() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    let blob: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    up.write("assets/model.bin", &blob)
        .write("README", "readme\n");
    let base = up.commit("base");
    let mut changed = blob.clone();
    changed[100] = 0;
    changed.extend_from_slice(&[0, 0, 1, 2, 3]);
    up.write("assets/model.bin", &changed)
        .write("assets/new.bin", [0u8, 255, 0, 128, 7, 7, 7]);
    let tip = up.commit("binary");
    let diff = up.diff(&base, &tip);
    assert!(
        String::from_utf8_lossy(&diff).contains("GIT binary patch"),
        "the diff should carry binary patches"
    );
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
}

#[test]
fn renames_with_and_without_changes() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("old/same.txt", numbered("same", 20))
        .write("old/edited.txt", numbered("edit", 20))
        .write("keep.txt", "keep\n");
    let base = up.commit("base");
    up.rename("old/same.txt", "new/same.txt")
        .rename("old/edited.txt", "new/edited.txt")
        .write(
            "new/edited.txt",
            numbered("edit", 20).replace("edit 7\n", "edit seven\n"),
        );
    let tip = up.commit("rename");
    let diff = up.diff(&base, &tip);
    let text = String::from_utf8_lossy(&diff);
    assert!(text.contains("similarity index 100%"), "{text}");
    assert!(text.contains("rename from old/edited.txt"), "{text}");
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
}

#[test]
fn mode_changes() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("bin/run.sh", "#!/bin/sh\necho run\n")
        .write("bin/was-exec.sh", "#!/bin/sh\n")
        .chmod("bin/was-exec.sh", 0o755)
        .write("bin/both.sh", "#!/bin/sh\necho a\n");
    let base = up.commit("base");
    up.chmod("bin/run.sh", 0o755)
        .chmod("bin/was-exec.sh", 0o644)
        .write("bin/both.sh", "#!/bin/sh\necho b\n")
        .chmod("bin/both.sh", 0o755);
    let tip = up.commit("modes");
    let diff = up.diff(&base, &tip);
    let text = String::from_utf8_lossy(&diff);
    assert!(text.contains("old mode 100644\nnew mode 100755"), "{text}");
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(fx.checkout("app").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
    };
    assert_ne!(mode("bin/run.sh"), 0);
    assert_eq!(mode("bin/was-exec.sh"), 0);
}

#[test]
fn new_and_deleted_files() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n")
        .write("dir/deleted.txt", numbered("d", 5))
        .write("dir/empty-later.txt", "x\n")
        .write("dir/empty-deleted.txt", "");
    let base = up.commit("base");
    // Empty files added or deleted have no hunk at all: their sections end at `index`.
    up.remove("dir/deleted.txt")
        .remove("dir/empty-deleted.txt")
        .write("dir/empty-later.txt", "")
        .write("brand/new/file.txt", numbered("n", 3))
        .write("brand/empty.txt", "")
        .write("pkg/__init__.py", "")
        .write("zz/__init__.py", "");
    let tip = up.commit("add and delete");
    let diff = up.diff(&base, &tip);
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
    assert!(!fx.checkout("app").join("dir/deleted.txt").exists());
}

#[test]
fn missing_final_newline_in_every_direction() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("no-eol.txt", "one\ntwo")
        .write("gains-eol.txt", "one\ntwo")
        .write("loses-eol.txt", "one\ntwo\n");
    let base = up.commit("base");
    up.write("no-eol.txt", "one\nTWO")
        .write("gains-eol.txt", "one\ntwo\n")
        .write("loses-eol.txt", "one\ntwo")
        .write("new-no-eol.txt", "fresh");
    let tip = up.commit("eol");
    let diff = up.diff(&base, &tip);
    assert!(String::from_utf8_lossy(&diff).contains("\\ No newline at end of file"));
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
    assert_eq!(
        std::fs::read(fx.checkout("app").join("loses-eol.txt")).unwrap(),
        b"one\ntwo"
    );
}

#[test]
fn paths_with_special_characters() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    let names = [
        "key=value.txt",
        "a,b.txt",
        "f(x).txt",
        "arr[0].txt",
        "with space/file name.txt",
        "mix =,([ ]).txt",
        "ünïcode/naïve café.py",
        "quote\"d and back\\slash.txt",
    ];
    for n in names {
        up.write(n, numbered(n, 6));
    }
    up.write("to be renamed.txt", numbered("r", 10))
        .write("weights (v1).bin", [0u8, 1, 2, 3, 250, 0, 9])
        .write("gone soon.txt", "");
    let base = up.commit("base");
    for n in names {
        up.write(n, numbered(n, 6).replace(" 3\n", " three\n"));
    }
    up.rename("to be renamed.txt", "renamed (x=1, [y]).txt")
        .write("new dir/new, file (1) [a]=b.txt", "new\n")
        .write("weights (v1).bin", [0u8, 1, 2, 3, 251, 0, 9, 9])
        .write("new dir/blob [1].bin", [0u8, 0, 7])
        .write("new dir/empty file.py", "")
        .remove("gone soon.txt");
    let tip = up.commit("special");
    let diff = up.diff(&base, &tip);
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    assert_eq!(tree, up.tree(&tip));
}

#[test]
fn base_dir_places_a_relative_diff() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("vllm/platforms/xpu.py", numbered("xpu", 30))
        .write("vllm/platforms/cuda.py", numbered("cuda", 5))
        .write("xpu.py", "a decoy at the root\n");
    let base = up.commit("base");
    up.write(
        "vllm/platforms/xpu.py",
        numbered("xpu", 30).replace("xpu 12\n", "xpu twelve\n"),
    )
    .rename("vllm/platforms/cuda.py", "vllm/platforms/cuda_old.py")
    .write("vllm/platforms/b70.py", "arc = 'B70'\n");
    let tip = up.commit("xpu");
    let diff = up.diff_relative("vllm/platforms", &base, &tip);
    let text = String::from_utf8_lossy(&diff);
    assert!(
        text.contains("a/xpu.py") && !text.contains("vllm/"),
        "{text}"
    );
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, Some("vllm/platforms"))]);
    assert_eq!(tree, up.tree(&tip));
    // The decoy at the root is untouched.
    assert_eq!(
        std::fs::read(fx.checkout("app").join("xpu.py")).unwrap(),
        b"a decoy at the root\n"
    );
}

#[test]
fn base_dir_with_spaces_and_special_characters() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    let dir = "third party/pkg (v2)=x";
    up.write(&format!("{dir}/mod one.py"), numbered("m", 8))
        .write(&format!("{dir}/data [1].bin"), [0u8, 1, 2])
        .write(&format!("{dir}/old name.py"), numbered("o", 8));
    let base = up.commit("base");
    up.write(
        &format!("{dir}/mod one.py"),
        numbered("m", 8).replace("m 5\n", "m five\n"),
    )
    .write(&format!("{dir}/data [1].bin"), [3u8, 0, 1, 2])
    .rename(&format!("{dir}/old name.py"), &format!("{dir}/new name.py"))
    .write(&format!("{dir}/empty new.py"), "");
    let tip = up.commit("tip");
    let diff = up.diff_relative(dir, &base, &tip);
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, Some(dir))]);
    assert_eq!(tree, up.tree(&tip));
}

#[test]
fn several_bundles_apply_in_order() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 10));
    let base = up.commit("base");
    up.write(
        "f.txt",
        numbered("f", 10).replace("f 5\n", "f 5\nadded by one\n"),
    )
    .write("one.txt", "one\n");
    let one = up.commit("one");
    // The second bundle changes what the first one added.
    up.write(
        "f.txt",
        numbered("f", 10).replace("f 5\n", "f 5\nadded by one, edited by two\n"),
    )
    .rename("one.txt", "two.txt");
    let two = up.commit("two");
    let d1 = up.diff(&base, &one);
    let d2 = up.diff(&one, &two);
    let tree = fx.assert_apply_like_git(&up, &base, &[(&d1, None), (&d2, None)]);
    assert_eq!(tree, up.tree(&two));

    // In the other order the second bundle cannot apply, and nothing is written.
    let fx = Fixture::new();
    let up2 = fx.upstream("app");
    up2.write("f.txt", numbered("f", 10));
    let base2 = up2.commit("base");
    assert_eq!(base2, base, "same content, same time: same commit");
    let b1 = fx.bundle("one", &d1);
    let b2 = fx.bundle("two", &d2);
    fx.pins(&[Pin::new("app", &up2, &base2)
        .patch(b2.entry())
        .patch(b1.entry())]);
    let err = fx.stderr(&["apply"], 1);
    assert!(err.contains("two.patch.gz.b64"), "{err}");
    assert_eq!(fx.worktree_tree(&fx.checkout("app")), up2.tree(&base2));
}

#[test]
fn bundle_read_from_another_pinned_repo() {
    let fx = Fixture::new();
    let app = fx.upstream("app");
    app.write("engine.py", numbered("engine", 12));
    let base = app.commit("base");
    app.write(
        "engine.py",
        numbered("engine", 12).replace("engine 4\n", "engine 4 on xpu\n"),
    );
    let tip = app.commit("fix");
    let diff = app.diff(&base, &tip);

    // The lab repository keeps the promoted bundle; pins.yaml names it as lab:PATH.
    let b = fx.bundle("promoted", &diff);
    let lab = fx.upstream("lab");
    lab.write("bundles/promoted.patch.gz.b64", fx.read(&b.path))
        .write("README", "the lab\n");
    let lab_commit = lab.commit("promote");
    // A later lab commit with another bundle under the same name must not be read.
    lab.write("bundles/promoted.patch.gz.b64", "garbage\n");
    lab.commit("later");
    std::fs::remove_dir_all(fx.path("patches")).unwrap();

    fx.pins(&[
        Pin::new("app", &app, &base)
            .patch(b.entry().in_repo("lab", "bundles/promoted.patch.gz.b64")),
        Pin::new("lab", &lab, &lab_commit),
    ]);
    let want = fx.oracle_tree(&app, &base, &[(&diff, None)]);
    fx.pinstack().args(["apply", "app"]).assert().code(0);
    assert_eq!(fx.worktree_tree(&fx.checkout("app")), want);
    let check = fx.json(&["check"], 0);
    assert_eq!(check["repos"][0]["tree"], want.as_str(), "{check:#}");
    assert_eq!(
        check["repos"][0]["bundles"][0]["bundle"],
        "lab:bundles/promoted.patch.gz.b64"
    );
}

#[test]
fn submodules_are_checked_out_and_the_bundle_applies() {
    let fx = Fixture::new();
    let lib = fx.upstream("onednn");
    lib.write("include/dnnl.h", "#define DNNL 1\n");
    lib.commit("lib");
    let app = fx.upstream("kernels");
    app.write("setup.py", numbered("setup", 8));
    app.add_submodule(&lib, "third_party/onednn");
    let base = app.commit("with submodule");
    app.write(
        "setup.py",
        numbered("setup", 8).replace("setup 2\n", "setup 2 xpu\n"),
    );
    let tip = app.commit("fix");
    let diff = app.diff(&base, &tip);
    let b = fx.bundle("kernels", &diff);
    fx.pins(&[Pin::new("kernels", &app, &base)
        .submodules()
        .patch(b.entry())]);
    let want = fx.oracle_tree(&app, &base, &[(&diff, None)]);
    fx.pinstack()
        .args(["apply"])
        .envs(ALLOW_FILE_PROTOCOL.iter().copied())
        .assert()
        .code(0);
    let checkout = fx.checkout("kernels");
    assert_eq!(
        std::fs::read(checkout.join("third_party/onednn/include/dnnl.h")).unwrap(),
        b"#define DNNL 1\n"
    );
    let status = git_bytes(&checkout, &["submodule", "status"]);
    assert!(
        status.starts_with(b" "),
        "submodule not at its commit: {}",
        String::from_utf8_lossy(&status)
    );
    assert_eq!(fx.worktree_tree(&checkout), want);
    // Again: already applied, submodule already current.
    let again = fx.json(&["apply"], 0);
    assert_eq!(again["repos"][0]["outcome"], "already_applied");
}

#[test]
fn reapplying_is_a_no_op() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", numbered("a", 10))
        .write("b.bin", [0u8, 1, 2]);
    let base = up.commit("base");
    up.write("a.txt", numbered("a", 10).replace("a 1\n", "A 1\n"))
        .write("b.bin", [3u8, 0, 4])
        .write("c.txt", "c\n");
    let tip = up.commit("tip");
    let tree = fx.assert_apply_like_git(&up, &base, &[(&up.diff(&base, &tip), None)]);
    let checkout = fx.checkout("app");
    fx.sh(&format!(
        "find '{}' -path '*/.git' -prune -o -type f -exec touch -d '2001-02-03 04:05:06' {{}} +",
        checkout.display()
    ));
    let before = snapshot(&checkout);
    let out = fx.stdout(&["apply"], 0);
    assert!(out.contains("already applied"), "{out}");
    let v = fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["outcome"], "already_applied");
    assert_eq!(v["repos"][0]["tree"], tree.as_str());
    assert_eq!(snapshot(&checkout), before, "re-applying rewrote files");
}

#[test]
fn apply_writes_files_and_no_objects() {
    // The bundles' trees are worked out in memory: the checkout's object store gets nothing
    // (no blob, no tree) that `fetch` did not put there.
    let (fx, up, base, diff, _) = applied();
    let objects = fx.checkout("app").join(".git/objects");
    std::fs::remove_dir_all(fx.checkout("app")).unwrap();
    fx.pins(&[Pin::new("app", &up, &base).patch(fx.bundle("again", &diff).entry())]);
    fx.pinstack().arg("fetch").assert().code(0);
    let before = snapshot(&objects);
    fx.json(&["apply"], 0);
    assert_eq!(snapshot(&objects), before, "apply wrote objects");
}

#[test]
fn a_repo_without_bundles_is_left_at_its_pin() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let base = up.commit("base");
    fx.pins(&[Pin::new("app", &up, &base)]);
    let v = fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["outcome"], "no_bundles");
    assert_eq!(fx.worktree_tree(&fx.checkout("app")), up.tree(&base));
}

/// An applied checkout of one bundle, ready to be made dirty.
fn applied() -> (Fixture, crate::harness::Upstream, String, Vec<u8>, String) {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("patched.txt", numbered("p", 10))
        .write("other.txt", numbered("o", 10))
        .write("data.bin", [1u8, 2, 3, 0, 4]);
    let base = up.commit("base");
    up.write("patched.txt", numbered("p", 10).replace("p 2\n", "p two\n"));
    let tip = up.commit("tip");
    let diff = up.diff(&base, &tip);
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diff, None)]);
    (fx, up, base, diff, tree)
}

#[test]
fn a_dirty_tree_is_refused_and_left_alone() {
    let (fx, _up, _base, _diff, tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "my own edit\n").unwrap();
    std::fs::write(checkout.join("mine.txt"), "untracked\n").unwrap();
    let dirty = fx.worktree_tree(&checkout);
    let before = snapshot(&checkout);
    let err = fx.stderr(&["apply"], 1);
    assert!(err.contains("other.txt"), "{err}");
    assert!(err.contains("mine.txt"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(snapshot(&checkout), before);
    assert_eq!(fx.worktree_tree(&checkout), dirty);
    assert_ne!(dirty, tree);
}

#[test]
fn a_drifted_bundle_file_is_refused() {
    let (fx, ..) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("patched.txt"), "neither pin nor bundle\n").unwrap();
    let err = fx.stderr(&["apply"], 1);
    assert!(err.contains("patched.txt"), "{err}");
    assert_eq!(
        std::fs::read(checkout.join("patched.txt")).unwrap(),
        b"neither pin nor bundle\n"
    );
}

#[test]
fn an_ignored_file_where_a_bundle_adds_one_is_refused_and_kept() {
    // git status does not list ignored files, so only a look at the file itself shows that a
    // path the bundle creates is taken.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let base = up.commit("base");
    up.write("notes.txt", "the bundle's notes\n");
    let tip = up.commit("adds notes");
    let b = fx.bundle("notes", &up.diff(&base, &tip));
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry())]);
    fx.json(&["fetch"], 0);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join(".git/info/exclude"), "notes.txt\n").unwrap();
    std::fs::write(checkout.join("notes.txt"), "my own notes\n").unwrap();
    for args in [&["apply"][..], &["apply", "--force"]] {
        let out = fx.pinstack_std().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("notes.txt") && err.contains("ignore"), "{err}");
        // A rescue bundle would not hold an ignored file: even --force leaves it alone.
        assert_eq!(
            std::fs::read(checkout.join("notes.txt")).unwrap(),
            b"my own notes\n"
        );
    }
}

#[test]
fn force_rescues_local_changes_then_applies() {
    let (fx, up, base, _diff, tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "my own edit\n").unwrap();
    std::fs::write(
        checkout.join("patched.txt"),
        numbered("p", 10)
            .replace("p 2\n", "p two\n")
            .replace("p 9\n", "p nine (mine)\n"),
    )
    .unwrap();
    std::fs::remove_file(checkout.join("data.bin")).unwrap();
    std::fs::create_dir_all(checkout.join("notes")).unwrap();
    std::fs::write(checkout.join("notes/todo.txt"), "untracked work\n").unwrap();
    std::fs::write(checkout.join("notes/blob.bin"), [0u8, 159, 0, 1]).unwrap();
    std::fs::write(checkout.join("notes/empty.txt"), "").unwrap();
    std::fs::write(checkout.join("notes/with space.txt"), "spaced\n").unwrap();
    let dirty = fx.worktree_tree(&checkout);

    let v = fx.json(&["apply", "--force"], 0);
    assert_eq!(v["repos"][0]["outcome"], "applied", "{v:#}");
    assert_eq!(fx.worktree_tree(&checkout), tree);
    assert!(
        !checkout.join("notes").exists(),
        "untracked files stay after a reset"
    );

    let rescue = v["repos"][0]["rescue"].as_str().expect("a rescue bundle");
    let rescue = std::path::Path::new(rescue);
    let rescue = if rescue.is_absolute() {
        rescue.to_path_buf()
    } else {
        fx.root().join(rescue)
    };
    assert_eq!(rescue.parent().unwrap(), fx.path("workspace/rescue"));
    assert!(rescue.to_string_lossy().ends_with(".patch.gz.b64"));
    // Unpacked with coreutils and applied with git onto HEAD, it gives back the user's tree.
    let diff = pipe(
        "sh",
        &["-c", "base64 -d | gzip -dc"],
        &std::fs::read(&rescue).unwrap(),
    );
    let head = git(&checkout, &["rev-parse", "HEAD"]);
    assert_eq!(head, base);
    assert_eq!(fx.oracle_tree(&up, &head, &[(&diff, None)]), dirty);
    // pinstack's own unpack agrees.
    let unpacked = fx
        .pinstack()
        .args(["bundle", "unpack"])
        .arg(&rescue)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(unpacked, diff);
}

#[test]
fn force_on_a_clean_tree_saves_nothing() {
    let (fx, _up, _base, _diff, tree) = applied();
    let v = fx.json(&["apply", "--force"], 0);
    assert_eq!(v["repos"][0]["outcome"], "already_applied");
    assert!(v["repos"][0]["rescue"].is_null());
    assert!(!fx.path("workspace/rescue").exists());
    assert_eq!(fx.worktree_tree(&fx.checkout("app")), tree);
}

#[test]
fn apply_then_git_status_names_exactly_the_bundle_paths() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n")
        .write("b.txt", "b\n")
        .write("c.txt", "c\n");
    let base = up.commit("base");
    up.write("a.txt", "A\n")
        .remove("b.txt")
        .write("d.txt", "d\n");
    let tip = up.commit("tip");
    fx.assert_apply_like_git(&up, &base, &[(&up.diff(&base, &tip), None)]);
    let status = git_bytes(
        &fx.checkout("app"),
        &["status", "--porcelain", "--untracked-files=all"],
    );
    let mut paths: Vec<String> = String::from_utf8(status)
        .unwrap()
        .lines()
        .map(|l| l[3..].to_owned())
        .collect();
    paths.sort();
    assert_eq!(paths, ["a.txt", "b.txt", "d.txt"]);
}

#[test]
fn a_pin_bump_over_an_applied_checkout() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 10));
    let old = up.commit("old pin");
    up.write("f.txt", numbered("f", 10).replace("f 2\n", "f 2 patched\n"));
    let old_fix = up.commit("old fix");
    let old_bundle = fx.bundle("old", &up.diff(&old, &old_fix));
    fx.pins(&[Pin::new("app", &up, &old).patch(old_bundle.entry())]);
    fx.pinstack().arg("apply").assert().code(0);

    up.restore(&old);
    up.write("f.txt", numbered("f", 12));
    let new = up.commit("new pin");
    up.write(
        "f.txt",
        numbered("f", 12).replace("f 11\n", "f 11 patched\n"),
    );
    let new_fix = up.commit("new fix");
    let diff = up.diff(&new, &new_fix);
    let new_bundle = fx.bundle("new", &diff);
    fx.pins(&[Pin::new("app", &up, &new).patch(new_bundle.entry())]);
    let checkout = fx.checkout("app");
    // The old bundle's change is pinstack's own work: it makes way for the new pin by itself,
    // with nothing to rescue.
    let v = fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["outcome"], "applied", "{v:#}");
    assert_eq!(v["repos"][0]["replaced_previous"], true, "{v:#}");
    assert!(v["repos"][0]["rescue"].is_null(), "{v:#}");
    assert!(!fx.path("workspace/rescue").exists());
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), new);
    assert_eq!(
        fx.worktree_tree(&checkout),
        fx.oracle_tree(&up, &new, &[(&diff, None)])
    );
}

/// Bumps the pin of an applied checkout after a person edited it: the edit is not pinstack's
/// own work, so apply refuses, and `--force` saves it first.
#[test]
fn a_pin_bump_over_an_edited_checkout_is_refused() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 10));
    let old = up.commit("old pin");
    up.write("f.txt", numbered("f", 10).replace("f 2\n", "f 2 patched\n"));
    let old_fix = up.commit("old fix");
    let old_bundle = fx.bundle("old", &up.diff(&old, &old_fix));
    fx.pins(&[Pin::new("app", &up, &old).patch(old_bundle.entry())]);
    fx.pinstack().arg("apply").assert().code(0);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("notes.txt"), "a person's notes\n").unwrap();

    up.restore(&old);
    up.write("h.txt", "a file the new pin adds\n");
    let new = up.commit("new pin");
    fx.pins(&[Pin::new("app", &up, &new).patch(old_bundle.entry())]);
    let files = fx.worktree_tree(&checkout);
    let err = fx.stderr(&["apply"], 1);
    assert!(
        err.contains("notes.txt") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), old);
    assert_eq!(fx.worktree_tree(&checkout), files);
    let v = fx.json(&["apply", "--force"], 0);
    assert!(v["repos"][0]["rescue"].is_string(), "{v:#}");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), new);
}

/// A new version of a bundle replaces pinstack's own earlier version without --force; the same
/// tree plus a person's edit is refused.
#[test]
fn a_changed_bundle_replaces_the_old_one() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 10));
    up.write("g.txt", "g\n");
    let pin = up.commit("pin");
    up.write("f.txt", numbered("f", 10).replace("f 3\n", "f 3 v1\n"));
    up.write("new-v1.txt", "made by v1\n");
    let v1 = up.commit("v1");
    let b1 = fx.bundle("v1", &up.diff(&pin, &v1));
    up.restore(&pin);
    up.write("f.txt", numbered("f", 10).replace("f 7\n", "f 7 v2\n"));
    up.write("g.txt", "g v2\n");
    let v2 = up.commit("v2");
    let diff2 = up.diff(&pin, &v2);
    let b2 = fx.bundle("v2", &diff2);
    fx.pins(&[Pin::new("app", &up, &pin).patch(b1.entry())]);
    fx.pinstack().arg("apply").assert().code(0);
    let checkout = fx.checkout("app");
    assert!(checkout.join("new-v1.txt").exists());

    fx.pins(&[Pin::new("app", &up, &pin).patch(b2.entry())]);
    let v = fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["replaced_previous"], true, "{v:#}");
    assert!(
        !checkout.join("new-v1.txt").exists(),
        "v1's new file is gone"
    );
    assert_eq!(
        fx.worktree_tree(&checkout),
        fx.oracle_tree(&up, &pin, &[(&diff2, None)])
    );
    // Applying again is a no-op.
    let again = fx.json(&["apply"], 0);
    assert_eq!(again["repos"][0]["outcome"], "already_applied");

    // Back to v1, but a person edited a v2 file meanwhile: refused, nothing written.
    std::fs::write(checkout.join("g.txt"), "g edited by hand\n").unwrap();
    fx.pins(&[Pin::new("app", &up, &pin).patch(b1.entry())]);
    let err = fx.stderr(&["apply"], 1);
    assert!(err.contains("g.txt"), "{err}");
    assert_eq!(
        std::fs::read(checkout.join("g.txt")).unwrap(),
        b"g edited by hand\n"
    );
}

/// pinstack killed while it writes a bundle's files (after the Nth file): the next plain apply
/// recognises its own unfinished work from the journal and finishes it, equal to git apply; a
/// person's edit on top of the half-written tree is still refused.
#[test]
fn an_apply_killed_while_writing_files_is_finished_by_the_next_run() {
    for n in 1..=6 {
        let (fx, up, pin, diff) = fetched_with_a_bundle();
        kill_apply_after(&fx, n);
        let v = fx.json(&["apply"], 0);
        assert_eq!(v["repos"][0]["outcome"], "applied", "n={n}: {v:#}");
        assert!(
            v["repos"][0]["rescue"].is_null(),
            "nothing of a person's to rescue"
        );
        assert_eq!(
            fx.worktree_tree(&fx.checkout("app")),
            fx.oracle_tree(&up, &pin, &[(&diff, None)]),
            "n={n}"
        );
    }

    // Killed half way, then a person edits a file: not pinstack's work any more.
    let (fx, ..) = fetched_with_a_bundle();
    kill_apply_after(&fx, 2);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("f4.txt"), "a person's edit\n").unwrap();
    let err = fx.stderr(&["apply"], 1);
    assert!(err.contains("f4.txt"), "{err}");
    assert_eq!(
        std::fs::read(checkout.join("f4.txt")).unwrap(),
        b"a person's edit\n"
    );
}

/// A full disk when the bundles' files are about to be written (simulated in test builds):
/// nothing is written, the message says the disk is full, and the next apply recovers.
#[test]
fn a_full_disk_during_apply_writes_nothing_and_the_next_run_recovers() {
    let (fx, up, pin, diff) = fetched_with_a_bundle();
    let checkout = fx.checkout("app");
    let before = fx.worktree_tree(&checkout);
    let out = fx
        .pinstack()
        .env("PINSTACK_FAULT_DISK_FULL", "src/app")
        .arg("apply")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"));
    assert_eq!(fx.worktree_tree(&checkout), before, "nothing was written");
    fx.pinstack().arg("apply").assert().code(0);
    assert_eq!(
        fx.worktree_tree(&checkout),
        fx.oracle_tree(&up, &pin, &[(&diff, None)])
    );
}

/// A pinned repo of five files, fetched, with a bundle that changes all five and adds two:
/// (fixture, upstream, pin, diff).
fn fetched_with_a_bundle() -> (Fixture, crate::harness::Upstream, String, Vec<u8>) {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    for i in 0..5 {
        up.write(&format!("f{i}.txt"), numbered(&format!("f{i}"), 8));
    }
    let pin = up.commit("pin");
    for i in 0..5 {
        up.write(
            &format!("f{i}.txt"),
            numbered(&format!("f{i}"), 8).replace("3\n", "3 patched\n"),
        );
    }
    up.write("new/one.txt", "one\n");
    up.write("new/two.txt", "two\n");
    let fix = up.commit("fix");
    let diff = up.diff(&pin, &fix);
    let b = fx.bundle("fix", &diff);
    fx.pins(&[Pin::new("app", &up, &pin).patch(b.entry())]);
    fx.pinstack().arg("fetch").assert().code(0);
    (fx, up, pin, diff)
}

/// pinstack killed while a file takes its new content's place: the old file removed, the new
/// one complete under its temporary name. The next plain apply finishes the work, equal to git
/// apply, and leaves no temporary file behind.
#[test]
fn an_apply_killed_between_removing_a_file_and_renaming_its_new_content_converges() {
    for n in 1..=7 {
        let (fx, up, pin, diff) = fetched_with_a_bundle();
        kill_apply_at(&fx, "apply-replace", n);
        let checkout = fx.checkout("app");
        let temps = std::fs::read_dir(&checkout)
            .unwrap()
            .chain(
                std::fs::read_dir(checkout.join("new"))
                    .into_iter()
                    .flatten(),
            )
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pinstack-new"))
            .count();
        assert_eq!(
            temps, 1,
            "n={n}: the file being replaced waits under its temporary name"
        );
        let v = fx.json(&["apply"], 0);
        assert_eq!(v["repos"][0]["outcome"], "applied", "n={n}: {v:#}");
        assert!(
            v["repos"][0]["rescue"].is_null(),
            "n={n}: nothing to rescue"
        );
        assert_eq!(
            fx.worktree_tree(&checkout),
            fx.oracle_tree(&up, &pin, &[(&diff, None)]),
            "n={n}"
        );
        let left = git(&checkout, &["status", "--porcelain", "--ignored"]);
        assert!(!left.contains("pinstack-new"), "n={n}: {left}");
    }
}

/// A temporary file in the way of a write (left by some earlier run, and ignored by the
/// checkout, so no status shows it) is replaced, not taken for the new content.
#[test]
fn a_stale_temporary_file_in_the_way_is_replaced() {
    let (fx, up, pin, diff) = fetched_with_a_bundle();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join(".git/info/exclude"), "*.pinstack-new\n").unwrap();
    let stale = checkout.join(".f0.txt.pinstack-new");
    std::fs::write(&stale, "stale\n").unwrap();
    let v = fx.json(&["apply"], 0);
    assert_eq!(v["repos"][0]["outcome"], "applied", "{v:#}");
    assert!(!stale.exists(), "the temporary file took the file's place");
    assert_eq!(
        fx.worktree_tree(&checkout),
        fx.oracle_tree(&up, &pin, &[(&diff, None)])
    );
}

/// Runs `apply` with a fault point that kills it after the Nth file written.
fn kill_apply_after(fx: &Fixture, n: usize) {
    kill_apply_at(fx, "apply-write", n);
}

/// Runs `apply` with fault point `point` set to kill it at its Nth pass.
fn kill_apply_at(fx: &Fixture, point: &str, n: usize) {
    let killed = fx
        .pinstack()
        .env("PINSTACK_FAULT", format!("{point}:{n}"))
        .arg("apply")
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed at file {n}");
}

/// The rescue bundle's note, read back.
fn rescue_note(fx: &Fixture) -> String {
    let dir = fx.path("workspace/rescue");
    let note = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "txt"))
        .expect("a rescue note");
    std::fs::read_to_string(note).unwrap()
}

#[test]
fn force_keeps_files_git_ignores_and_its_note_restores_the_rest() {
    let (fx, _up, _base, _diff, tree) = applied();
    let checkout = fx.checkout("app");
    // Ignored by a rule of the person's own (an untracked .gitignore), and by the checkout's
    // exclude file, at the top and inside an untracked folder.
    std::fs::write(checkout.join(".gitignore"), "secret.env\n").unwrap();
    std::fs::write(checkout.join("secret.env"), "TOKEN=x\n").unwrap();
    std::fs::write(checkout.join(".git/info/exclude"), "*.o\n").unwrap();
    std::fs::create_dir_all(checkout.join("mywork/obj")).unwrap();
    std::fs::write(checkout.join("mywork/obj/k.o"), "hours of build\n").unwrap();
    std::fs::write(checkout.join("mywork/notes.txt"), "notes\n").unwrap();
    std::fs::write(checkout.join("other.txt"), "my own edit\n").unwrap();
    let dirty = fx.worktree_tree(&checkout);

    let v = fx.json(&["apply", "--force"], 0);
    assert_eq!(v["repos"][0]["outcome"], "applied", "{v:#}");
    // Kept, though its rule went into the rescue with the .gitignore that held it.
    assert_eq!(
        std::fs::read(checkout.join("secret.env")).unwrap(),
        b"TOKEN=x\n"
    );
    std::fs::rename(checkout.join("secret.env"), fx.path("secret.env")).unwrap();
    assert_eq!(fx.worktree_tree(&checkout), tree);
    std::fs::rename(fx.path("secret.env"), checkout.join("secret.env")).unwrap();
    assert_eq!(
        std::fs::read(checkout.join("mywork/obj/k.o")).unwrap(),
        b"hours of build\n"
    );
    assert!(
        !checkout.join("mywork/notes.txt").exists(),
        "rescued, then removed"
    );

    // The note's restore line, run as it stands in the checkout, gives the person's tree back.
    let note = rescue_note(&fx);
    let restore = note
        .lines()
        .skip_while(|l| !l.starts_with("restore"))
        .nth(1)
        .expect("a restore command")
        .trim()
        .to_owned();
    fx.sh(&format!("cd '{}' && {restore}", checkout.display()));
    assert_eq!(fx.worktree_tree(&checkout), dirty);
}

#[test]
fn force_refuses_where_an_ignored_file_would_go_with_a_folder() {
    // A tracked file replaced by a folder holding an ignored file: the reset would remove the
    // folder, ignored file and all.
    let (fx, _up, _base, _diff, _tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join(".git/info/exclude"), "*.o\n").unwrap();
    std::fs::remove_file(checkout.join("other.txt")).unwrap();
    std::fs::create_dir_all(checkout.join("other.txt")).unwrap();
    std::fs::write(checkout.join("other.txt/k.o"), "built\n").unwrap();
    let before = snapshot(&checkout);
    let err = fx.stderr(&["apply", "--force"], 1);
    assert!(err.contains("other.txt/k.o"), "{err}");
    assert_eq!(snapshot(&checkout), before);
    assert!(!fx.path("workspace/rescue").exists());
}

#[test]
fn force_refuses_while_a_git_operation_is_in_progress() {
    let (fx, _up, base, _diff, _tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "resolving\n").unwrap();
    std::fs::write(checkout.join(".git/MERGE_HEAD"), format!("{base}\n")).unwrap();
    let before = snapshot(&checkout);
    let err = fx.stderr(&["apply", "--force"], 1);
    assert!(err.contains("in progress"), "{err}");
    assert_eq!(snapshot(&checkout), before);
    assert!(checkout.join(".git/MERGE_HEAD").exists());
}

#[test]
fn force_keeps_staged_changes_the_work_tree_no_longer_holds() {
    let (fx, _up, _base, _diff, _tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "staged version\n").unwrap();
    std::fs::write(checkout.join("staged.txt"), "only in the index\n").unwrap();
    git(&checkout, &["add", "other.txt", "staged.txt"]);
    std::fs::write(checkout.join("other.txt"), "work tree version\n").unwrap();
    std::fs::remove_file(checkout.join("staged.txt")).unwrap();
    fx.json(&["apply", "--force"], 0);
    let refs = git(
        &checkout,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/pinstack/rescue/",
        ],
    );
    let index = refs
        .lines()
        .find(|r| r.ends_with("-index"))
        .unwrap_or_else(|| panic!("an index commit among {refs}"));
    assert_eq!(
        git(&checkout, &["show", &format!("{index}:other.txt")]),
        "staged version"
    );
    assert_eq!(
        git(&checkout, &["show", &format!("{index}:staged.txt")]),
        "only in the index"
    );
    assert!(rescue_note(&fx).contains("staged changes: commit"));
}

#[test]
fn a_rescue_never_overwrites_an_earlier_one() {
    // Rescues of one second share a time stamp: files already there under the stamps of the
    // next few seconds stay as they are, and the new rescue takes another name.
    let (fx, _up, _base, _diff, _tree) = applied();
    let checkout = fx.checkout("app");
    let dir = fx.path("workspace/rescue");
    std::fs::create_dir_all(&dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut taken = Vec::new();
    for s in now..now + 6 {
        let stamp = String::from_utf8(pipe(
            "date",
            &["-u", "-d", &format!("@{s}"), "+%Y%m%dT%H%M%SZ"],
            b"",
        ))
        .unwrap()
        .trim()
        .to_owned();
        for ext in ["patch.gz.b64", "txt"] {
            let p = dir.join(format!("app-{stamp}.{ext}"));
            std::fs::write(&p, "an earlier rescue\n").unwrap();
            taken.push(p);
        }
    }
    std::fs::write(checkout.join("other.txt"), "my own edit\n").unwrap();
    let v = fx.json(&["apply", "--force"], 0);
    let rescue = v["repos"][0]["rescue"].as_str().unwrap().to_owned();
    for p in &taken {
        assert_eq!(std::fs::read_to_string(p).unwrap(), "an earlier rescue\n");
        assert_ne!(p.display().to_string(), rescue);
    }
}

/// A bundle that makes a file where the checkout has a folder of files git ignores: the folder
/// would go, files and all, so apply refuses, with and without --force; a folder of untracked
/// files is the person's work, rescued by --force as usual.
#[test]
fn a_folder_of_ignored_files_where_a_bundle_makes_a_file_is_refused() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("a.txt", "a\n");
    let base = up.commit("base");
    up.write("build", "now a file\n");
    let tip = up.commit("tip");
    let b = fx.bundle("build-file", &up.diff(&base, &tip));
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry())]);
    fx.pinstack().arg("fetch").assert().code(0);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join(".git/info/exclude"), "*.bin\n").unwrap();
    std::fs::create_dir_all(checkout.join("build/deep")).unwrap();
    std::fs::write(checkout.join("build/deep/out.bin"), "hours of build\n").unwrap();
    let before = snapshot(&checkout);
    for args in [&["apply"][..], &["apply", "--force"]] {
        let err = fx.stderr(args, 1);
        assert!(err.contains("build/deep/out.bin"), "{args:?}: {err}");
        assert_eq!(snapshot(&checkout), before, "{args:?}");
    }
    // Untracked (not ignored) files there are rescued by --force, then the file is written.
    std::fs::remove_file(checkout.join("build/deep/out.bin")).unwrap();
    std::fs::write(checkout.join("build/deep/notes.txt"), "mine\n").unwrap();
    let v = fx.json(&["apply", "--force"], 0);
    assert!(v["repos"][0]["rescue"].is_string(), "{v:#}");
    assert_eq!(
        std::fs::read(checkout.join("build")).unwrap(),
        b"now a file\n"
    );
}

/// A pin moved to a commit that is not there, or a bundle whose hash is wrong: apply refuses
/// before it rescues, resets, undoes or checks out anything, even with --force.
#[test]
fn what_refuses_refuses_before_anything_is_written() {
    let (fx, up, base, diff, _tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "my own edit\n").unwrap();
    // The work tree (a fetch may add objects and refs to .git, which hold no one's work).
    let files = || {
        let mut s = snapshot(&checkout);
        s.retain(|p, _| !p.starts_with(".git"));
        s
    };
    let before = files();
    let head = git(&checkout, &["rev-parse", "HEAD"]);
    up.write("other.txt", "moved on\n");
    let moved = up.commit("moved on");
    let b = fx.bundle("fix", &diff);
    let bad_hash = {
        let mut e = b.entry();
        e.sha256 = "0".repeat(64);
        e
    };
    for (pin, entry) in [
        (Pin::new("app", &up, &"1".repeat(40)), b.entry()),
        (Pin::new("app", &up, &moved), bad_hash.clone()),
        (Pin::new("app", &up, &base), bad_hash),
    ] {
        fx.pins(&[pin.patch(entry)]);
        for args in [&["apply"][..], &["apply", "--force"]] {
            let out = fx.pinstack_std().args(args).output().unwrap();
            assert!(!out.status.success(), "{args:?}");
            assert_eq!(files(), before, "{args:?}");
            assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), head, "{args:?}");
            assert!(!fx.path("workspace/rescue").exists(), "{args:?}");
        }
    }
}

/// A tracked folder replaced by a link to a folder outside the checkout: --force rescues the
/// link and resets the folder without writing through the link.
#[test]
fn force_does_not_write_through_a_link_that_replaced_a_folder() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("sub/c.txt", "c\n").write("a.txt", "a\n");
    let base = up.commit("base");
    up.write("a.txt", "patched\n");
    let tip = up.commit("tip");
    let b = fx.bundle("fix", &up.diff(&base, &tip));
    fx.pins(&[Pin::new("app", &up, &base).patch(b.entry())]);
    fx.pinstack().arg("apply").assert().code(0);
    let checkout = fx.checkout("app");
    let outside = fx.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::remove_dir_all(checkout.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, checkout.join("sub")).unwrap();
    let v = fx.json(&["apply", "--force"], 0);
    assert!(v["repos"][0]["rescue"].is_string(), "{v:#}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(
        std::fs::symlink_metadata(checkout.join("sub"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(std::fs::read(checkout.join("sub/c.txt")).unwrap(), b"c\n");
}

#[test]
fn force_refuses_an_index_with_unresolved_conflicts() {
    // As `git stash pop` leaves it: stages 1 to 3 for a path, and no operation in progress.
    let (fx, _up, _base, _diff, _tree) = applied();
    let checkout = fx.checkout("app");
    std::fs::write(
        checkout.join("other.txt"),
        "<<<<<<< ours\n=======\n>>>>>>> theirs\n",
    )
    .unwrap();
    let blob = git(&checkout, &["hash-object", "-w", "other.txt"]);
    git(&checkout, &["update-index", "--force-remove", "other.txt"]);
    let stages: String = (1..=3)
        .map(|n| format!("100644 {blob} {n}\tother.txt\n"))
        .collect();
    let dir = checkout.display().to_string();
    pipe(
        "git",
        &["-C", &dir, "update-index", "--index-info"],
        stages.as_bytes(),
    );
    let before = snapshot(&checkout);
    let err = fx.stderr(&["apply", "--force"], 1);
    assert!(err.contains("unresolved conflicts"), "{err}");
    assert_eq!(snapshot(&checkout), before);
    assert!(!fx.path("workspace/rescue").exists());
}

#[test]
fn force_saving_only_staged_changes_says_where_they_are() {
    // A checkout at its pin (no bundles), a change staged and the file put back as it was, and
    // the pin moved on: the work tree holds nothing to bundle, the index does.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("other.txt", "other\n");
    let base = up.commit("base");
    fx.pins(&[Pin::new("app", &up, &base)]);
    fx.json(&["apply"], 0);
    let checkout = fx.checkout("app");
    std::fs::write(checkout.join("other.txt"), "staged only\n").unwrap();
    git(&checkout, &["add", "other.txt"]);
    std::fs::write(checkout.join("other.txt"), "other\n").unwrap();
    up.write("new.txt", "new\n");
    let moved = up.commit("moved on");
    fx.pins(&[Pin::new("app", &up, &moved)]);
    let v = fx.json(&["apply", "--force"], 0);
    let rescue = v["repos"][0]["rescue"]
        .as_str()
        .expect("where the staged change is");
    assert!(rescue.ends_with(".txt"), "{v:#}");
    let note = rescue_note(&fx);
    assert!(note.contains("-index"), "{note}");
    let refs = git(
        &checkout,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/pinstack/rescue/",
        ],
    );
    let index = refs.lines().find(|r| r.ends_with("-index")).unwrap();
    assert_eq!(
        git(&checkout, &["show", &format!("{index}:other.txt")]),
        "staged only"
    );
}
