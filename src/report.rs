//! Rendering check results: human text, JSON and JUnit XML, all from the same values.

use serde_json::{Value, json};

use crate::exit::ExitStatus;
use crate::source::{BundleStatus, RepoCheck};

/// The exit status a set of check results calls for.
pub fn check_status(results: &[RepoCheck]) -> ExitStatus {
    if results.iter().any(RepoCheck::has_invalid) {
        ExitStatus::Invalid
    } else if results.iter().all(RepoCheck::ok) {
        ExitStatus::Success
    } else {
        ExitStatus::NotAsPinned
    }
}

/// `{"ok", "repos": [{"name", "commit", "tree", "bundles": [{"bundle", "status", "file", "hunk", "detail"}]}]}`
pub fn check_json(results: &[RepoCheck]) -> Value {
    let repos: Vec<Value> = results
        .iter()
        .map(|r| {
            let bundles: Vec<Value> = r
                .bundles
                .iter()
                .map(|b| {
                    json!({
                        "bundle": b.bundle,
                        "status": b.status.as_str(),
                        "diagnosis": b.diagnosis.map(|d| d.as_str()),
                        "file": b.file,
                        "hunk": b.hunk,
                        "detail": b.detail,
                    })
                })
                .collect();
            json!({
                "name": r.name,
                "commit": r.commit,
                "tree": r.tree,
                "locked_tree": r.locked_tree,
                "tree_matches_lock": r.tree_matches_lock(),
                "ok": r.ok(),
                "bundles": bundles,
            })
        })
        .collect();
    json!({ "ok": results.iter().all(RepoCheck::ok), "repos": repos })
}

/// A short report per repo and bundle.
pub fn check_text(results: &[RepoCheck]) -> String {
    let mut out = String::new();
    for r in results {
        out.push_str(&format!("{} @ {}\n", r.name, &r.commit[..12]));
        if r.bundles.is_empty() {
            out.push_str("  (no bundles)\n");
        }
        for b in &r.bundles {
            let status = match b.status {
                BundleStatus::Ok => "ok",
                BundleStatus::HashMismatch => "HASH MISMATCH",
                BundleStatus::Invalid => "INVALID",
                BundleStatus::DoesNotApply => "DOES NOT APPLY",
                BundleStatus::Skipped => "skipped",
            };
            out.push_str(&format!("  {status:<15} {}\n", b.bundle));
            if !b.detail.is_empty() {
                out.push_str(&format!("  {:<15} {}\n", "", b.detail));
            }
        }
        match (&r.tree, &r.locked_tree) {
            (Some(t), Some(l)) if t == l => out.push_str(&format!("  tree {t} (matches the lock)\n")),
            (Some(t), Some(l)) => out.push_str(&format!(
                "  TREE DIFFERS   pin + bundles give {t}, pins.yaml locks {l} (run `pinstack lock` if intended)\n"
            )),
            (Some(t), None) => out.push_str(&format!("  tree {t} (not locked)\n")),
            (None, _) => {}
        }
    }
    let bad = results.iter().filter(|r| !r.ok()).count();
    if bad == 0 {
        out.push_str(&format!("all {} repo(s) as pinned", results.len()));
    } else {
        out.push_str(&format!("{bad} of {} repo(s) not as pinned", results.len()));
    }
    out
}

/// A JUnit XML report: one suite per repo, one case per bundle plus one for the tree lock.
pub fn junit(results: &[RepoCheck]) -> String {
    let mut suites = String::new();
    let (mut total, mut failed) = (0, 0);
    for r in results {
        let mut cases = String::new();
        let (mut tests, mut failures) = (0, 0);
        for b in &r.bundles {
            tests += 1;
            let body = if b.status == BundleStatus::Ok {
                String::new()
            } else if b.status == BundleStatus::Skipped {
                format!("<skipped message=\"{}\"/>", xml(&b.detail))
            } else {
                failures += 1;
                format!(
                    "<failure type=\"{}\" message=\"{}\">{}</failure>",
                    b.status.as_str(),
                    xml(&b.detail),
                    xml(&b.detail)
                )
            };
            cases.push_str(&format!(
                "    <testcase classname=\"pinstack.{}\" name=\"{}\">{body}</testcase>\n",
                xml(&r.name),
                xml(&b.bundle)
            ));
        }
        if r.locked_tree.is_some() {
            tests += 1;
            let body = if r.tree_matches_lock() {
                String::new()
            } else {
                failures += 1;
                let msg = format!(
                    "pin + bundles give {}, pins.yaml locks {}",
                    r.tree.as_deref().unwrap_or("no tree"),
                    r.locked_tree.as_deref().unwrap_or_default()
                );
                format!(
                    "<failure type=\"tree_differs\" message=\"{0}\">{0}</failure>",
                    xml(&msg)
                )
            };
            cases.push_str(&format!(
                "    <testcase classname=\"pinstack.{}\" name=\"tree lock\">{body}</testcase>\n",
                xml(&r.name)
            ));
        }
        total += tests;
        failed += failures;
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">\n{cases}  </testsuite>\n",
            xml(&r.name)
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pinstack check\" tests=\"{total}\" failures=\"{failed}\">\n{suites}</testsuites>\n"
    )
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}
