//! `pinstack demo`: the whole source pipeline on repositories made on the spot, kept in a
//! folder the tests then check with git.

use pinstack::pins::Pins;

use crate::harness::{Fixture, snapshot};

#[test]
fn the_demo_walks_the_pipeline_and_leaves_a_locked_workspace() {
    let fx = Fixture::new();
    let out = fx.stdout(&["demo", "--dir", "demo"], 0);
    for step in [
        "==> pinstack fetch",
        "fetched",
        "==> pinstack check\n",
        "==> pinstack apply\n",
        "applied 1 bundle(s)",
        "==> pinstack apply (again)",
        "already applied, left alone",
        "==> pinstack lock",
        "==> pinstack check --offline",
        "(matches the lock)",
    ] {
        assert!(out.contains(step), "no {step:?} in\n{out}");
    }
    // The moved pin: found, and explained down to the hunk.
    let moved = &out[out
        .find("==> pinstack --pins pins-moved.yaml check engine")
        .unwrap_or_else(|| panic!("no moved-pin step in\n{out}"))..];
    assert!(moved.contains("DOES NOT APPLY"), "{moved}");
    assert!(moved.contains("hunk 1 of engine/envs.py"), "{moved}");
    assert!(moved.contains("its context is not in the file"), "{moved}");
    assert!(
        moved.contains("-> exit 1 (expected: the bundle must be regenerated)"),
        "{moved}"
    );
    assert!(out.contains("demo finished: all as pinned"), "{out}");

    // pins.yaml holds a tree lock per repo, and git agrees with each: the checkout's files make
    // exactly the locked tree.
    let dir = fx.path("demo");
    let pins = Pins::load(&dir.join("pins.yaml")).expect("the demo's pins.yaml loads");
    let names: Vec<&str> = pins.repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["engine", "kernels", "lab"]);
    let text = String::from_utf8(fx.read("demo/pins.yaml")).unwrap();
    assert_eq!(text.matches("\n    tree: ").count(), 3, "{text}");
    for repo in &pins.repos {
        let tree = repo
            .tree
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no tree lock", repo.name));
        let checkout = dir.join("workspace/src").join(&repo.dir);
        assert!(checkout.join(".git").exists(), "{}", checkout.display());
        assert_eq!(fx.worktree_tree(&checkout), tree, "{}", repo.name);
    }
    // The kernels bundle is rooted in a subfolder, as the real llm-scaler bundle is.
    let kernels = pins.repo("kernels").unwrap();
    assert_eq!(
        kernels.patches[0].base_dir.as_deref(),
        Some("vllm/custom-esimd-kernels-vllm")
    );

    // And the audit of what the demo left is clean as pinned.
    let v = fx.json(
        &[
            "--pins",
            "demo/pins.yaml",
            "--workspace",
            "demo/workspace",
            "audit",
        ],
        0,
    );
    assert_eq!(v["repos"].as_array().unwrap().len(), 3, "{v:#}");
}

#[test]
fn the_demo_refuses_a_folder_that_is_not_empty() {
    let fx = Fixture::new();
    fx.write("busy/keep.txt", "mine\n");
    let before = snapshot(&fx.path("busy"));
    let err = fx.stderr(&["demo", "--dir", "busy"], 2);
    assert!(err.contains("must be empty"), "{err}");
    assert_eq!(snapshot(&fx.path("busy")), before);
    assert_eq!(fx.read("busy/keep.txt"), b"mine\n");
}
