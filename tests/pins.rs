//! pins.yaml validation: every refusal is exit 2 with `pins.yaml:LINE:COLUMN` at the right line,
//! and nothing is fetched or written.

use crate::harness::Fixture;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn hash() -> String {
    "ab".repeat(32)
}

/// Writes `text` as pins.yaml, runs `fetch`, and asserts exit 2 with an error at `line` that
/// mentions `needle`; returns stderr.
fn refused(text: &str, line: usize, needle: &str) -> String {
    let fx = Fixture::new();
    fx.write("pins.yaml", text);
    let err = fx.stderr(&["fetch"], 2);
    let at = format!("pins.yaml:{line}:");
    let located = err
        .lines()
        .find(|l| l.contains("pins.yaml:"))
        .unwrap_or_else(|| panic!("no pins.yaml:LINE:COLUMN in {err}"));
    assert!(located.contains(&at), "expected {at} in {err}");
    let column = located
        .split(&at)
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert!(
        column.parse::<usize>().is_ok_and(|c| c >= 1),
        "no column in {err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(
        !fx.path("workspace").exists(),
        "a refused pins.yaml fetched"
    );
    err
}

#[test]
fn duplicate_key() {
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    commit: {}\n",
        "f".repeat(40)
    );
    refused(&text, 5, "duplicate");
}

#[test]
fn duplicate_repo() {
    let text = format!(
        "repos:\n  app:\n    url: /a\n    commit: {COMMIT}\n  app:\n    url: /b\n    commit: {COMMIT}\n"
    );
    refused(&text, 5, "duplicate");
}

#[test]
fn unknown_key() {
    let text = format!(
        "# pins\nrepos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    branch: main\n"
    );
    refused(&text, 6, "branch");
}

#[test]
fn unknown_key_in_a_patch_entry() {
    let h = hash();
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    patches:\n      - bundle: p.b64\n        sha256: {h}\n        diff_sha256: {h}\n        basedir: sub\n"
    );
    refused(&text, 9, "basedir");
}

#[test]
fn abbreviated_commit() {
    let text = "repos:\n  app:\n    url: /nowhere\n    commit: 0123456\n";
    let err = refused(text, 4, "0123456");
    assert!(err.contains("abbreviations are refused"), "{err}");
}

#[test]
fn malformed_sha256() {
    let h = hash();
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    patches:\n      - bundle: p.b64\n        sha256: {h}\n        diff_sha256: {h}\n      - bundle: q.b64\n        sha256: not-a-hash\n        diff_sha256: {h}\n"
    );
    refused(&text, 10, "sha256");
}

#[test]
fn short_diff_sha256() {
    let h = hash();
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    patches:\n      - bundle: p.b64\n        sha256: {h}\n        diff_sha256: {}\n",
        &h[..63]
    );
    refused(&text, 8, "diff_sha256");
}

#[test]
fn missing_url() {
    let text = format!(
        "repos:\n  other:\n    url: /other\n    commit: {COMMIT}\n  app:\n    commit: {COMMIT}\n    dir: somewhere\n"
    );
    refused(&text, 5, "url");
}

#[test]
fn missing_commit() {
    let text = "repos:\n  app:\n    url: /nowhere\n\n# the end\n";
    refused(text, 2, "commit");
}

#[test]
fn missing_hash_of_a_bundle() {
    let h = hash();
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    patches:\n      - bundle: p.b64\n        sha256: {h}\n"
    );
    let fx = Fixture::new();
    fx.write("pins.yaml", text);
    let err = fx.stderr(&["check"], 2);
    assert!(err.contains("diff_sha256"), "{err}");
    assert!(
        err.contains("pins.yaml:6:") || err.contains("pins.yaml:7:"),
        "the error should point into the entry: {err}"
    );
}

#[test]
fn malformed_tree_lock() {
    let text = format!("repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    tree: 1234\n");
    refused(&text, 5, "tree");
}

#[test]
fn bad_repo_name() {
    let text = format!("repos:\n  vLLM:\n    url: /nowhere\n    commit: {COMMIT}\n");
    refused(&text, 2, "vLLM");
}

#[test]
fn hostile_base_dir_and_dir() {
    let h = hash();
    let text = format!(
        "repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    patches:\n      - bundle: p.b64\n        sha256: {h}\n        diff_sha256: {h}\n        base_dir: ../outside\n"
    );
    refused(&text, 9, "..");
    let text =
        format!("repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    dir: .git/x\n");
    refused(&text, 5, ".git");
    let text = format!(
        "repos:\n  a:\n    url: /a\n    commit: {COMMIT}\n  b:\n    url: /b\n    commit: {COMMIT}\n    dir: a\n"
    );
    refused(&text, 8, "already used");
}

#[test]
fn wrong_type() {
    let text =
        format!("repos:\n  app:\n    url: /nowhere\n    commit: {COMMIT}\n    submodules: maybe\n");
    refused(&text, 5, "bool");
}

#[test]
fn not_yaml_and_not_utf8() {
    refused("repos: [\n", 1, "");
    let fx = Fixture::new();
    fx.write("pins.yaml", b"repos:\n  app:\n    url: /x\xff\n".as_slice());
    let err = fx.stderr(&["check"], 2);
    assert!(err.contains("pins.yaml:3:12"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
}

#[test]
fn a_missing_pins_file_names_itself() {
    let fx = Fixture::new();
    let err = fx.stderr(&["fetch"], 2);
    assert!(err.contains("pins.yaml"), "{err}");
    let err = fx.stderr(&["check", "--pins", "elsewhere/stack.yaml"], 2);
    assert!(err.contains("elsewhere/stack.yaml"), "{err}");
}

#[test]
fn a_bundle_in_another_repo_must_name_a_safe_path() {
    let h = hash();
    let text = format!(
        "repos:\n  lab:\n    url: /lab\n    commit: {COMMIT}\n  app:\n    url: /app\n    commit: {COMMIT}\n    patches:\n      - bundle: lab:../x.b64\n        sha256: {h}\n        diff_sha256: {h}\n"
    );
    refused(&text, 9, "..");
}

/// An alias bomb inside a place the schema allows (a repo's `patches:` list of lists), deep
/// nesting and a file over the size limit: each is refused quickly with a location, and
/// nothing is fetched.
#[test]
fn alias_bombs_deep_nesting_and_huge_files() {
    let mut bomb = format!("repos:\n  app:\n    url: /a\n    commit: {COMMIT}\n    patches:\n");
    bomb.push_str("      - &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("      - &l{i} [{refs}]\n"));
    }
    refused(&bomb, 6, "");

    let deep = format!(
        "repos:\n  app: {}{}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    refused(&deep, 2, "");

    let huge = format!("repos:\n{}\n", "#".repeat(5 * 1024 * 1024));
    refused(&huge, 1, "limit for YAML files");
}
