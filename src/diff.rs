//! Reading `git diff` text: its files, hunks and paths; placing its paths under a base folder;
//! refusing paths that would write outside the repository.

use std::ops::Range;

/// Why some bytes are not a usable `git diff`.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("not a git diff: no `diff --git` header found (first line: {first_line:?})")]
    NotADiff { first_line: String },
    #[error(
        "a plain unified diff without `diff --git` headers; regenerate it with `git diff` (or `git diff --binary`)"
    )]
    PlainUnified,
    #[error("the diff changes nothing: an empty bundle would silently apply nothing")]
    Empty,
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("{path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
}

/// A parsed `git diff`: the raw text and what each file section does.
#[derive(Debug, Clone)]
pub struct Patch {
    raw: Vec<u8>,
    /// The file sections, in the order they appear.
    pub files: Vec<FilePatch>,
}

/// How a file section changes its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Deleted,
    Modified,
    Renamed,
    Copied,
}

impl Change {
    /// One-letter code as `git diff --name-status` prints it.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Deleted => 'D',
            Change::Modified => 'M',
            Change::Renamed => 'R',
            Change::Copied => 'C',
        }
    }
}

/// One `diff --git` section.
#[derive(Debug, Clone)]
pub struct FilePatch {
    /// The path before the change; `None` for a new file.
    pub old_path: Option<String>,
    /// The path after the change; `None` for a deleted file.
    pub new_path: Option<String>,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// Abbreviated blob ids from the `index` line, when there is one.
    pub old_id: Option<String>,
    pub new_id: Option<String>,
    pub change: Change,
    /// A `GIT binary patch` section.
    pub binary: bool,
    pub hunks: Vec<Hunk>,
    /// 1-based line of the `diff --git` header in the diff text.
    pub line: usize,
    header: Vec<Range<usize>>,
    body: Range<usize>,
}

/// One `@@` hunk.
#[derive(Debug, Clone)]
pub struct Hunk {
    pub old_start: usize,
    pub old_lines: usize,
    pub new_start: usize,
    pub new_lines: usize,
    /// The `@@ ... @@` line without its newline.
    pub header: String,
    /// The hunk's lines, relative to the file section's body.
    lines: Vec<HunkLine>,
    pub added: usize,
    pub removed: usize,
}

/// One line of a hunk.
#[derive(Debug, Clone)]
struct HunkLine {
    /// `b' '`, `b'-'` or `b'+'`.
    tag: u8,
    /// The text without the tag and without its line ending.
    text: Range<usize>,
    /// Where the line's bytes in the file end: after its line ending, or at the end of its text
    /// when a `\ No newline at end of file` follows it.
    end: usize,
}

impl FilePatch {
    /// The path this section is about: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }

    /// Lines added and removed over all hunks.
    pub fn stats(&self) -> (usize, usize) {
        self.hunks
            .iter()
            .fold((0, 0), |(a, r), h| (a + h.added, r + h.removed))
    }

    /// The lines after a `GIT binary patch` header (empty for a text section).
    pub fn binary_body<'a>(&self, patch: &'a Patch) -> &'a [u8] {
        if self.binary {
            &patch.raw[self.body.clone()]
        } else {
            &[]
        }
    }

    /// Whether the section leaves a symbolic link at its new path.
    pub fn creates_symlink(&self) -> bool {
        self.new_path.is_some() && self.new_mode == Some(0o120000)
    }
}

impl Hunk {
    /// The lines the hunk expects to find (context and removed), without newlines.
    pub fn preimage<'a>(&'a self, patch: &'a Patch, file: &FilePatch) -> Vec<&'a [u8]> {
        self.side(patch, file, b'+')
    }

    /// The lines the hunk leaves behind (context and added), without newlines.
    pub fn postimage<'a>(&'a self, patch: &'a Patch, file: &FilePatch) -> Vec<&'a [u8]> {
        self.side(patch, file, b'-')
    }

    fn side<'a>(&'a self, patch: &'a Patch, file: &FilePatch, skip: u8) -> Vec<&'a [u8]> {
        let body = &patch.raw[file.body.clone()];
        self.lines
            .iter()
            .filter(|l| l.tag != skip)
            .map(|l| &body[l.text.clone()])
            .collect()
    }

    /// The lines the hunk expects and the lines it leaves, byte for byte as they are in the
    /// file: each with its line ending (`\r\n` included), except a last line the diff marks as
    /// having none.
    pub fn exact_images<'a>(
        &'a self,
        patch: &'a Patch,
        file: &FilePatch,
    ) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
        let body = &patch.raw[file.body.clone()];
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        for l in &self.lines {
            let bytes = &body[l.text.start..l.end];
            if l.tag != b'+' {
                pre.push(bytes);
            }
            if l.tag != b'-' {
                post.push(bytes);
            }
        }
        (pre, post)
    }
}

impl Patch {
    /// Parses `git diff` output; refuses text that is not a diff or that changes nothing.
    pub fn parse(raw: Vec<u8>) -> Result<Patch, DiffError> {
        Patch::parse_alongside(raw, |_| ()).0
    }

    /// [`Patch::parse`], while `alongside` reads the same bytes on another core (a hash, say)
    /// when the text is large.
    pub fn parse_alongside<T: Send>(
        raw: Vec<u8>,
        alongside: impl FnOnce(&[u8]) -> T + Send,
    ) -> (Result<Patch, DiffError>, T) {
        let large = raw.len() >= crate::par::WORTH_A_THREAD;
        let (files, other) =
            crate::par::join(large, || Parser::new(&raw).parse(), || alongside(&raw));
        (files.map(|files| Patch { raw, files }), other)
    }

    /// The diff text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Lines added and removed over all files.
    pub fn stats(&self) -> (usize, usize) {
        self.files.iter().fold((0, 0), |(a, r), f| {
            let (fa, fr) = f.stats();
            (a + fa, r + fr)
        })
    }

    /// Rewrites every path to sit under `base_dir` (as `git apply --directory` does), so the diff
    /// applies from the repository root.
    pub fn place_under(self, base_dir: &str) -> Result<Patch, DiffError> {
        let base = base_dir.trim_matches('/');
        if base.is_empty() {
            return Ok(self);
        }
        check_path(base)?;
        let prefix = |p: &Option<String>| p.as_ref().map(|p| format!("{base}/{p}"));
        let mut raw = Vec::with_capacity(self.raw.len() + self.files.len() * 4 * base.len());
        let mut files = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let old_path = prefix(&file.old_path);
            let new_path = prefix(&file.new_path);
            let mut header = Vec::with_capacity(file.header.len());
            for range in &file.header {
                let line = &self.raw[range.clone()];
                let start = raw.len();
                match rewrite_header_line(line, old_path.as_deref(), new_path.as_deref()) {
                    Some(text) => raw.extend_from_slice(text.as_bytes()),
                    None => raw.extend_from_slice(line),
                }
                header.push(start..raw.len());
            }
            let body_start = raw.len();
            raw.extend_from_slice(&self.raw[file.body.clone()]);
            files.push(FilePatch {
                old_path,
                new_path,
                header,
                body: body_start..raw.len(),
                ..file.clone()
            });
        }
        let patch = Patch { raw, files };
        patch.check_paths()?;
        Ok(patch)
    }

    /// Refuses any path that would write outside the repository or inside `.git`, and any
    /// write through a symbolic link the diff itself creates.
    pub fn check_paths(&self) -> Result<(), DiffError> {
        let links: Vec<&str> = self
            .files
            .iter()
            .filter(|f| f.creates_symlink())
            .filter_map(|f| f.new_path.as_deref())
            .collect();
        for file in &self.files {
            for path in [&file.old_path, &file.new_path].into_iter().flatten() {
                check_path(path)?;
            }
            if let Some(path) = &file.new_path
                && links.iter().any(|link| {
                    path.strip_prefix(link)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            {
                return Err(DiffError::UnsafePath {
                    path: path.clone(),
                    reason: "it would be written through a symbolic link the diff creates",
                });
            }
        }
        Ok(())
    }
}

/// Refuses a repository-relative path that is empty, absolute, has `.` or `..` components, or
/// enters a `.git` folder.
pub fn check_path(path: &str) -> Result<(), DiffError> {
    let unsafe_path = |reason| {
        Err(DiffError::UnsafePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return unsafe_path("empty path");
    }
    if path.starts_with('/') {
        return unsafe_path("absolute path: a bundle may only write inside its repository");
    }
    if path.contains('\0') {
        return unsafe_path("path contains a NUL byte");
    }
    for component in path.split('/') {
        match component {
            "" => return unsafe_path("empty path component"),
            "." => return unsafe_path("`.` component"),
            ".." => return unsafe_path("`..` component: it would write outside the repository"),
            c if c.eq_ignore_ascii_case(".git") => {
                return unsafe_path("`.git` component: a bundle may not write git's own files");
            }
            _ => {}
        }
    }
    Ok(())
}

/// A header line naming paths, rewritten to name `old` and `new` (quoted as git quotes).
fn rewrite_header_line(line: &[u8], old: Option<&str>, new: Option<&str>) -> Option<String> {
    let either = || new.or(old).unwrap_or_default();
    // git ends a `---`/`+++` name that holds a space with a tab, for the sake of `patch`.
    let side = |p: Option<&str>, prefix: &str| match p {
        Some(p) if p.contains(' ') => format!("{}\t", quote(&format!("{prefix}{p}"))),
        Some(p) => quote(&format!("{prefix}{p}")),
        None => "/dev/null".to_owned(),
    };
    if line.starts_with(b"diff --git ") {
        let a = old.unwrap_or_else(either);
        let b = new.unwrap_or_else(either);
        Some(format!(
            "diff --git {} {}\n",
            quote(&format!("a/{a}")),
            quote(&format!("b/{b}"))
        ))
    } else if line.starts_with(b"--- ") {
        Some(format!("--- {}\n", side(old, "a/")))
    } else if line.starts_with(b"+++ ") {
        Some(format!("+++ {}\n", side(new, "b/")))
    } else {
        for (key, path) in [
            ("rename from ", old),
            ("rename to ", new),
            ("copy from ", old),
            ("copy to ", new),
        ] {
            if line.starts_with(key.as_bytes()) {
                return Some(format!("{key}{}\n", quote(path.unwrap_or_default())));
            }
        }
        None
    }
}

/// Quotes a path the way git does when it holds `"`, `\`, control or non-ASCII bytes.
pub fn quote(path: &str) -> String {
    quote_if(path, needs_quotes(path))
}

fn needs_quotes(path: &str) -> bool {
    path.bytes()
        .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
}

fn quote_if(path: &str, needs: bool) -> String {
    if !needs {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len() + 8);
    out.push('"');
    for b in path.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// Reads a C-style quoted name at the start of `s`; returns the name and the rest.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                let byte = match c {
                    b'a' => 7,
                    b'b' => 8,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 11,
                    b'f' => 12,
                    b'r' => b'\r',
                    b'"' | b'\\' => c,
                    b'0'..=b'3' => {
                        // Three octal digits: `c` and the two after it.
                        let digits = s.get(i - 1..i + 2)?;
                        i += 2;
                        let mut v = 0u8;
                        for d in digits {
                            if !(b'0'..=b'7').contains(d) {
                                return None;
                            }
                            v = v * 8 + (d - b'0');
                        }
                        v
                    }
                    _ => return None,
                };
                out.push(byte);
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

struct Parser<'a> {
    raw: &'a [u8],
    /// Byte ranges of the lines, newline included.
    lines: Vec<Range<usize>>,
    at: usize,
}

#[derive(Default)]
struct Header {
    git_old: Option<String>,
    git_new: Option<String>,
    minus: Option<Option<String>>,
    plus: Option<Option<String>>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    copy: bool,
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    new_file: bool,
    deleted: bool,
    old_id: Option<String>,
    new_id: Option<String>,
}

impl<'a> Parser<'a> {
    fn new(raw: &'a [u8]) -> Self {
        let mut lines = Vec::with_capacity(raw.len() / 40 + 1);
        let mut start = 0;
        for i in memchr_iter(raw) {
            lines.push(start..i + 1);
            start = i + 1;
        }
        if start < raw.len() {
            lines.push(start..raw.len());
        }
        Parser { raw, lines, at: 0 }
    }

    fn line(&self, i: usize) -> &'a [u8] {
        &self.raw[self.lines[i].clone()]
    }

    fn malformed(&self, line: usize, reason: impl Into<String>) -> DiffError {
        DiffError::Malformed {
            line: line + 1,
            reason: reason.into(),
        }
    }

    fn parse(mut self) -> Result<Vec<FilePatch>, DiffError> {
        if self.raw.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DiffError::Empty);
        }
        let mut files = Vec::new();
        let mut saw_plain = false;
        while self.at < self.lines.len() {
            let line = self.line(self.at);
            if line.starts_with(b"diff --git ") {
                files.push(self.file()?);
            } else {
                saw_plain |= line.starts_with(b"+++ ") || line.starts_with(b"@@ -");
                self.at += 1;
            }
        }
        if files.is_empty() {
            if saw_plain {
                return Err(DiffError::PlainUnified);
            }
            let first = self.lines.first().map(|r| &self.raw[r.clone()]);
            let first_line = String::from_utf8_lossy(first.unwrap_or_default());
            return Err(DiffError::NotADiff {
                first_line: first_line.trim_end().chars().take(80).collect(),
            });
        }
        Ok(files)
    }

    fn file(&mut self) -> Result<FilePatch, DiffError> {
        let first = self.at;
        let mut h = Header::default();
        let (git_old, git_new) = self.git_names(first)?;
        h.git_old = git_old;
        h.git_new = git_new;
        let mut header = vec![self.lines[first].clone()];
        self.at += 1;
        let mut binary = false;
        while self.at < self.lines.len() {
            let i = self.at;
            let line = trim_newline(self.line(i));
            if line.starts_with(b"diff --git ") || line.starts_with(b"@@ ") {
                break;
            }
            if line == b"GIT binary patch" {
                binary = true;
                header.push(self.lines[i].clone());
                self.at += 1;
                break;
            }
            if line.starts_with(b"Binary files ") {
                return Err(self.malformed(
                    i,
                    "binary change without its data: regenerate the diff with `git diff --binary`",
                ));
            }
            self.header_line(i, line, &mut h)?;
            header.push(self.lines[i].clone());
            self.at += 1;
        }
        let body_start = self.lines.get(self.at).map_or(self.raw.len(), |r| r.start);
        let mut hunks = Vec::new();
        if binary {
            while self.at < self.lines.len() && !self.line(self.at).starts_with(b"diff --git ") {
                self.at += 1;
            }
        } else {
            while self.at < self.lines.len() && self.line(self.at).starts_with(b"@@ ") {
                hunks.push(self.hunk(body_start, hunks.len() + 1)?);
            }
            // Anything up to the next section is trailing text (a mail signature, say).
            let body_end = self.lines.get(self.at).map_or(self.raw.len(), |r| r.start);
            while self.at < self.lines.len() && !self.line(self.at).starts_with(b"diff --git ") {
                self.at += 1;
            }
            let body = body_start..body_end;
            return self.finish(first, h, header, body, hunks, false);
        }
        let body_end = self.lines.get(self.at).map_or(self.raw.len(), |r| r.start);
        self.finish(first, h, header, body_start..body_end, hunks, binary)
    }

    fn finish(
        &self,
        first: usize,
        h: Header,
        header: Vec<Range<usize>>,
        body: Range<usize>,
        hunks: Vec<Hunk>,
        binary: bool,
    ) -> Result<FilePatch, DiffError> {
        let renamed = h.rename_from.is_some() || h.rename_to.is_some();
        let old_path = if h.new_file {
            None
        } else {
            h.rename_from
                .or_else(|| h.minus.clone().flatten())
                .or(h.git_old)
        };
        let new_path = if h.deleted {
            None
        } else {
            h.rename_to
                .or_else(|| h.plus.clone().flatten())
                .or(h.git_new)
        };
        let change = if h.new_file || (h.minus == Some(None) && new_path.is_some()) {
            Change::Added
        } else if h.deleted || (h.plus == Some(None) && old_path.is_some()) {
            Change::Deleted
        } else if renamed && h.copy {
            Change::Copied
        } else if renamed {
            Change::Renamed
        } else {
            Change::Modified
        };
        let (old_path, new_path) = match change {
            Change::Added => (None, new_path),
            Change::Deleted => (old_path, None),
            _ => (old_path, new_path),
        };
        if old_path.is_none() && new_path.is_none() {
            return Err(self.malformed(first, "file section names no path"));
        }
        // Without a rename or copy, both names are one path; anything else is a diff whose
        // names carry no `a/` and `b/` (`git diff --no-prefix`), which git would apply to a
        // path of its own guessing.
        if change == Change::Modified && old_path != new_path {
            return Err(self.malformed(
                first,
                format!(
                    "the section names two paths ({:?} and {:?}) but no rename or copy; was \
                     the diff made with --no-prefix? regenerate it with `git diff`",
                    old_path.unwrap_or_default(),
                    new_path.unwrap_or_default()
                ),
            ));
        }
        let mode_change = h.old_mode.is_some() && h.new_mode.is_some() && h.old_mode != h.new_mode;
        if change == Change::Modified && hunks.is_empty() && !binary && !mode_change {
            return Err(self.malformed(
                first,
                format!(
                    "the section for {:?} changes nothing",
                    new_path.or(old_path).unwrap_or_default()
                ),
            ));
        }
        Ok(FilePatch {
            old_path,
            new_path,
            old_mode: h.old_mode,
            new_mode: h.new_mode,
            old_id: h.old_id,
            new_id: h.new_id,
            change,
            binary,
            hunks,
            line: first + 1,
            header,
            body,
        })
    }

    /// The two names on a `diff --git` line.
    fn git_names(&self, i: usize) -> Result<(Option<String>, Option<String>), DiffError> {
        let rest = &trim_newline(self.line(i))[b"diff --git ".len()..];
        let bad = || self.malformed(i, "unreadable `diff --git` line");
        let (a, b) = if rest.starts_with(b"\"") {
            let (a, rest) = unquote(rest).ok_or_else(bad)?;
            let rest = rest.strip_prefix(b" ").ok_or_else(bad)?;
            let b = if rest.starts_with(b"\"") {
                unquote(rest).ok_or_else(bad)?.0
            } else {
                rest.to_vec()
            };
            (a, b)
        } else if let Some(pos) = rest.windows(3).position(|w| w == b" \"b") {
            let b = unquote(&rest[pos + 1..]).ok_or_else(bad)?.0;
            (rest[..pos].to_vec(), b)
        } else {
            // Unquoted names may hold spaces; both halves are the same path unless renamed,
            // and a rename names its paths on its own lines.
            let n = rest.len().saturating_sub(5) / 2;
            if rest.len() == 2 * n + 5 && rest[2 + n..].starts_with(b" b/") {
                (rest[..2 + n].to_vec(), rest[3 + n..].to_vec())
            } else {
                match rest.iter().position(|&c| c == b' ') {
                    Some(p) => (rest[..p].to_vec(), rest[p + 1..].to_vec()),
                    None => return Err(bad()),
                }
            }
        };
        let strip = |name: Vec<u8>, prefix: &[u8]| -> Result<Option<String>, DiffError> {
            let name = name
                .strip_prefix(prefix)
                .map(<[u8]>::to_vec)
                .unwrap_or(name);
            utf8(name)
                .map(Some)
                .map_err(|_| self.malformed(i, "path is not UTF-8"))
        };
        Ok((strip(a, b"a/")?, strip(b, b"b/")?))
    }

    fn header_line(&self, i: usize, line: &[u8], h: &mut Header) -> Result<(), DiffError> {
        let text = std::str::from_utf8(line).map_err(|_| self.malformed(i, "path is not UTF-8"))?;
        let mode = |s: &str| {
            u32::from_str_radix(s.trim(), 8).map_err(|_| self.malformed(i, "unreadable file mode"))
        };
        let path = |s: &str| -> Result<String, DiffError> {
            if s.starts_with('"') {
                let (p, _) =
                    unquote(s.as_bytes()).ok_or_else(|| self.malformed(i, "bad quoting"))?;
                utf8(p).map_err(|_| self.malformed(i, "path is not UTF-8"))
            } else {
                Ok(s.to_owned())
            }
        };
        let side = |s: &str, prefix: &str| -> Result<Option<String>, DiffError> {
            // git ends a name holding a space with a tab, for the sake of `patch`.
            let s = s.strip_suffix('\t').unwrap_or(s);
            if s == "/dev/null" {
                return Ok(None);
            }
            let p = path(s)?;
            Ok(Some(p.strip_prefix(prefix).map(str::to_owned).unwrap_or(p)))
        };
        if let Some(rest) = text.strip_prefix("old mode ") {
            h.old_mode = Some(mode(rest)?);
        } else if let Some(rest) = text.strip_prefix("new mode ") {
            h.new_mode = Some(mode(rest)?);
        } else if let Some(rest) = text.strip_prefix("deleted file mode ") {
            h.deleted = true;
            h.old_mode = Some(mode(rest)?);
        } else if let Some(rest) = text.strip_prefix("new file mode ") {
            h.new_file = true;
            h.new_mode = Some(mode(rest)?);
        } else if let Some(rest) = text.strip_prefix("rename from ") {
            h.rename_from = Some(path(rest)?);
        } else if let Some(rest) = text.strip_prefix("rename to ") {
            h.rename_to = Some(path(rest)?);
        } else if let Some(rest) = text.strip_prefix("copy from ") {
            h.copy = true;
            h.rename_from = Some(path(rest)?);
        } else if let Some(rest) = text.strip_prefix("copy to ") {
            h.copy = true;
            h.rename_to = Some(path(rest)?);
        } else if let Some(rest) = text.strip_prefix("index ") {
            let (ids, mode_text) = rest.split_once(' ').unwrap_or((rest, ""));
            let (old, new) = ids
                .split_once("..")
                .ok_or_else(|| self.malformed(i, "unreadable `index` line"))?;
            let hex = |s: &str| s.len() >= 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex(old) || !hex(new) {
                return Err(self.malformed(i, "unreadable blob ids on the `index` line"));
            }
            h.old_id = Some(old.to_ascii_lowercase());
            h.new_id = Some(new.to_ascii_lowercase());
            if !mode_text.is_empty() {
                let m = mode(mode_text)?;
                h.old_mode.get_or_insert(m);
                h.new_mode.get_or_insert(m);
            }
        } else if let Some(rest) = text.strip_prefix("--- ") {
            h.minus = Some(side(rest, "a/")?);
        } else if let Some(rest) = text.strip_prefix("+++ ") {
            h.plus = Some(side(rest, "b/")?);
        } else if text.starts_with("similarity index ") || text.starts_with("dissimilarity index ")
        {
        } else {
            return Err(self.malformed(
                i,
                format!("unexpected line in a file header: {:?}", truncate(text)),
            ));
        }
        Ok(())
    }

    fn hunk(&mut self, body_start: usize, number: usize) -> Result<Hunk, DiffError> {
        let i = self.at;
        let header_text = String::from_utf8_lossy(trim_newline(self.line(i))).into_owned();
        let (old_start, old_lines, new_start, new_lines) = parse_hunk_header(&header_text)
            .ok_or_else(|| self.malformed(i, format!("unreadable hunk header {header_text:?}")))?;
        self.at += 1;
        let (mut old_left, mut new_left) = (old_lines, new_lines);
        let mut lines = Vec::new();
        let (mut added, mut removed) = (0, 0);
        while old_left > 0 || new_left > 0 {
            let Some(range) = self.lines.get(self.at).cloned() else {
                return Err(self.malformed(
                    i,
                    format!("hunk {number} ({header_text}) is truncated: the diff ends early"),
                ));
            };
            let line = &self.raw[range.clone()];
            let text_end = range.end - (line.len() - trim_newline(line).len());
            let tag = if line == b"\n" { b' ' } else { line[0] };
            let text = (range.start + 1).min(text_end) - body_start..text_end - body_start;
            match tag {
                b' ' if old_left > 0 && new_left > 0 => {
                    old_left -= 1;
                    new_left -= 1;
                }
                b'-' if old_left > 0 => {
                    old_left -= 1;
                    removed += 1;
                }
                b'+' if new_left > 0 => {
                    new_left -= 1;
                    added += 1;
                }
                b'\\' => {
                    no_newline(&mut lines);
                    self.at += 1;
                    continue;
                }
                _ => {
                    return Err(self.malformed(
                        self.at,
                        format!(
                            "hunk {number} ({header_text}) does not match its line counts: \
                             {old_left} old and {new_left} new lines still expected"
                        ),
                    ));
                }
            }
            let end = range.end - body_start;
            lines.push(HunkLine { tag, text, end });
            self.at += 1;
        }
        while self.at < self.lines.len() && self.line(self.at).starts_with(b"\\") {
            no_newline(&mut lines);
            self.at += 1;
        }
        Ok(Hunk {
            old_start,
            old_lines,
            new_start,
            new_lines,
            header: header_text,
            lines,
            added,
            removed,
        })
    }
}

/// A `\\ No newline at end of file` marker: the line before it ends without its newline.
fn no_newline(lines: &mut [HunkLine]) {
    if let Some(last) = lines.last_mut()
        && last.end > last.text.end
    {
        last.end -= 1;
    }
}

fn parse_hunk_header(s: &str) -> Option<(usize, usize, usize, usize)> {
    let rest = s.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn utf8(bytes: Vec<u8>) -> Result<String, std::string::FromUtf8Error> {
    String::from_utf8(bytes)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn memchr_iter(raw: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_spaces_split_in_the_middle() {
        let diff = b"diff --git a/a b/c b/a b/c\nnew file mode 100644\nindex 0000000..e69de29\n";
        let patch = Patch::parse(diff.to_vec()).unwrap();
        assert_eq!(patch.files[0].new_path.as_deref(), Some("a b/c"));
        assert_eq!(patch.files[0].change, Change::Added);
    }

    #[test]
    fn quoting_round_trips() {
        for p in ["plain", "tab\there", "quote\"d", "ünïcode", "back\\slash"] {
            let q = quote(p);
            let (u, rest) = if q.starts_with('"') {
                unquote(q.as_bytes()).unwrap()
            } else {
                (q.as_bytes().to_vec(), &b""[..])
            };
            assert_eq!(String::from_utf8(u).unwrap(), p);
            assert!(rest.is_empty());
        }
    }
}
