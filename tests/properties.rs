//! Property tests of the library: the bundle codec, path placement under a base_dir, and the
//! refusal of hostile paths.

use pinstack::bundle::{WRAP_COLUMN, decode, encode};
use pinstack::diff::{Patch, check_path};
use proptest::prelude::*;

/// A path component git writes unquoted and pinstack accepts: no `/`, not `.` or `..`, not
/// `.git`, no leading or trailing space.
fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_=,()\\[\\]+@.-]([a-zA-Z0-9_=,()\\[\\] +@.-]{0,10}[a-zA-Z0-9_=,()\\[\\]+@.-])?"
        .prop_filter("not . or .. or .git", |c| {
            c != "." && c != ".." && !c.eq_ignore_ascii_case(".git")
        })
}

fn safe_path(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..=max).prop_map(|c| c.join("/"))
}

/// What git prints after `--- `/`+++ `: a name holding a space ends with a tab.
fn side(prefix: &str, path: &str) -> String {
    if path.contains(' ') {
        format!("{prefix}{path}\t")
    } else {
        format!("{prefix}{path}")
    }
}

/// A `git diff` section of each kind for these paths.
fn sections(p: &str, q: &str) -> String {
    format!(
        "diff --git a/{p} b/{p}\nindex 1234567..89abcde 100644\n--- {}\n+++ {}\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n\
         diff --git a/{q} b/{q}\nnew file mode 100755\nindex 0000000..e69de29\n\
         diff --git a/{p}.orig b/{q}.moved\nsimilarity index 90%\nrename from {p}.orig\nrename to {q}.moved\nindex 1234567..89abcde 100644\n--- {}\n+++ {}\n@@ -1 +1 @@\n-a\n+b\n",
        side("a/", p),
        side("b/", p),
        side("a/", &format!("{p}.orig")),
        side("b/", &format!("{q}.moved")),
    )
}

fn ascii_whitespace() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![b' ', b'\t', b'\n', b'\r', 0x0c])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn codec_round_trips(bytes in prop::collection::vec(any::<u8>(), 1..4096)) {
        let encoded = encode(&bytes);
        prop_assert_eq!(decode(&encoded).unwrap(), bytes);
    }

    #[test]
    fn encoding_is_wrapped_at_76_columns(bytes in prop::collection::vec(any::<u8>(), 1..2048)) {
        let encoded = encode(&bytes);
        prop_assert!(encoded.ends_with(b"\n"));
        let lines: Vec<&[u8]> = encoded[..encoded.len() - 1].split(|&b| b == b'\n').collect();
        let (last, full) = lines.split_last().unwrap();
        prop_assert!(full.iter().all(|l| l.len() == WRAP_COLUMN));
        prop_assert!(!last.is_empty() && last.len() <= WRAP_COLUMN);
        prop_assert_eq!(encode(&bytes), encoded, "encoding is deterministic");
    }

    #[test]
    fn whitespace_anywhere_is_ignored(
        bytes in prop::collection::vec(any::<u8>(), 1..1024),
        inserts in prop::collection::vec((any::<prop::sample::Index>(), ascii_whitespace()), 0..40),
    ) {
        let mut encoded = encode(&bytes);
        for (at, ws) in inserts {
            let at = at.index(encoded.len() + 1);
            encoded.insert(at, ws);
        }
        prop_assert_eq!(decode(&encoded).unwrap(), bytes);
    }

    #[test]
    fn placing_under_a_base_dir_prefixes_every_path(
        p in safe_path(4),
        q in safe_path(3),
        base in safe_path(3),
    ) {
        let text = sections(&p, &q);
        let patch = Patch::parse(text.clone().into_bytes()).unwrap();
        prop_assert_eq!(patch.files[0].new_path.as_deref(), Some(p.as_str()));
        prop_assert_eq!(patch.files[2].old_path.clone(), Some(format!("{p}.orig")));
        let placed = patch.place_under(&base).unwrap();
        let check = |placed: &Patch| -> Result<(), TestCaseError> {
            let f = &placed.files;
            prop_assert_eq!(f.len(), 3);
            prop_assert_eq!(f[0].old_path.clone(), Some(format!("{base}/{p}")));
            prop_assert_eq!(f[0].new_path.clone(), Some(format!("{base}/{p}")));
            prop_assert_eq!(f[1].old_path.clone(), None);
            prop_assert_eq!(f[1].new_path.clone(), Some(format!("{base}/{q}")));
            prop_assert_eq!(f[1].new_mode, Some(0o100755));
            prop_assert_eq!(f[2].old_path.clone(), Some(format!("{base}/{p}.orig")));
            prop_assert_eq!(f[2].new_path.clone(), Some(format!("{base}/{q}.moved")));
            prop_assert_eq!(f[0].hunks.len(), 1);
            prop_assert_eq!(f[2].hunks.len(), 1);
            Ok(())
        };
        check(&placed)?;
        // The placed text reads back to the same paths: the header lines were rewritten too.
        let reread = Patch::parse(placed.as_bytes().to_vec()).unwrap();
        check(&reread)?;
        // A base_dir written with slashes around it means the same folder.
        let slashed = Patch::parse(text.into_bytes()).unwrap().place_under(&format!("/{base}/")).unwrap();
        prop_assert_eq!(slashed.as_bytes(), placed.as_bytes());
    }

    #[test]
    fn safe_paths_are_accepted(p in safe_path(5)) {
        prop_assert!(check_path(&p).is_ok(), "{p:?} refused");
    }

    #[test]
    fn hostile_paths_are_refused(
        before in prop::collection::vec(component(), 0..3),
        after in prop::collection::vec(component(), 0..3),
        evil in prop_oneof![
            Just("..".to_owned()),
            "\\.[gG][iI][tT]",
        ],
        absolute in any::<bool>(),
    ) {
        let mut parts = before.clone();
        parts.push(evil);
        parts.extend(after);
        let path = parts.join("/");
        prop_assert!(check_path(&path).is_err(), "{path:?} accepted");
        let rooted = format!("/{}", before.join("/"));
        if absolute {
            prop_assert!(check_path(&rooted).is_err(), "{rooted:?} accepted");
        }
        // The same path in a diff, or as a base_dir, is refused as well.
        let diff = format!(
            "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ {}\n@@ -0,0 +1 @@\n+x\n",
            side("b/", &path)
        );
        let patch = Patch::parse(diff.into_bytes()).unwrap();
        prop_assert!(patch.check_paths().is_err());
        let fine = Patch::parse(b"diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n".to_vec()).unwrap();
        prop_assert!(fine.place_under(&path).is_err(), "base_dir {path:?} accepted");
    }
}

/// Fragments YAML files are made of, so that generated inputs reach deep into the loaders
/// (keys they know, aliases, flow collections, odd scalars) instead of failing at byte one.
fn yaml_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("repos:\n".to_owned()),
        Just("  a:\n".to_owned()),
        Just("    url: u\n".to_owned()),
        Just("    commit: 0123456789012345678901234567890123456789\n".to_owned()),
        Just("    patches:\n      - bundle: b\n        sha256: ff\n".to_owned()),
        Just("name: n\nsteps:\n  - id: a\n    run: x\n".to_owned()),
        Just("    needs: [a]\n".to_owned()),
        Just("vars: { A: ${B} }\n".to_owned()),
        Just("x: &a [*a]\n".to_owned()),
        Just("- &b {k: *b}\n".to_owned()),
        Just("[[[[[[[[".to_owned()),
        Just("\t\"\\u0000\"\n".to_owned()),
        Just("? complex\n: key\n".to_owned()),
        Just("!!binary AAAA\n".to_owned()),
        "[ -~]{0,12}\n",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never make the bundle decoder panic or run away.
    #[test]
    fn the_bundle_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    /// Arbitrary text never makes the diff parser panic, and what it accepts has safe paths
    /// once checked.
    #[test]
    fn the_diff_parser_never_panics(text in "(diff --git a/[a-z./]{1,8} b/[a-z./]{1,8}\n|@@ -[0-9],[0-9] \\+[0-9],[0-9] @@\n|[-+ ][a-z]{0,5}\n|index [0-9a-f]{7}\\.\\.[0-9a-f]{7}\n|new file mode 100644\n|--- a/[a-z]{1,4}\n|\\+\\+\\+ b/[a-z]{1,4}\n){0,30}") {
        if let Ok(patch) = Patch::parse(text.into_bytes()) {
            let _ = patch.check_paths();
        }
    }

    /// Both YAML loaders turn any input into a value or an error with a location, never a
    /// panic or a hang.
    #[test]
    fn the_yaml_loaders_never_panic(text in yaml_soup()) {
        let path = std::path::Path::new("fuzz.yaml");
        let _ = pinstack::pins::Pins::parse(path, text.as_bytes());
        let opts = pinstack::recipe::LoadOptions {
            workspace: Some(std::env::temp_dir()),
            caller_env: Default::default(),
        };
        let _ = pinstack::recipe::Recipe::parse(path, text.as_bytes(), &opts);
    }
}
