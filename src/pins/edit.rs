//! Edits of pins.yaml that keep everything else in the file, comments included, as it was.
//!
//! The edits work on lines of block-style YAML, the style pins files are written in. A repo
//! written in flow style (`name: {url: ...}`) is refused with a message, never rewritten.

use std::path::Path;

use super::PinsError;

/// A bundle entry to add to a repo's `patches:` list.
#[derive(Debug, Clone)]
pub struct NewPatch<'a> {
    pub bundle: &'a str,
    pub sha256: &'a str,
    pub diff_sha256: &'a str,
    pub base_dir: Option<&'a str>,
}

/// Appends a bundle entry to the repo's `patches:` list, creating the list if needed.
pub fn add_patch(
    text: &str,
    path: &Path,
    repo: &str,
    patch: &NewPatch<'_>,
) -> Result<String, PinsError> {
    let doc = Doc::new(text);
    let block = doc.repo_block(path, repo)?;
    let child = block.child_indent;
    let entry = |indent: usize| {
        let pad = " ".repeat(indent);
        let mut lines = vec![
            format!("{pad}- bundle: {}", scalar(patch.bundle)),
            format!("{pad}  sha256: {}", patch.sha256),
            format!("{pad}  diff_sha256: {}", patch.diff_sha256),
        ];
        if let Some(b) = patch.base_dir {
            lines.push(format!("{pad}  base_dir: {}", scalar(b)));
        }
        lines
    };
    let mut lines: Vec<String> = doc.lines.iter().map(|l| l.to_string()).collect();
    match doc.key_line(&block, "patches") {
        Some(at) => {
            let rest = value_part(doc.lines[at], "patches");
            if rest == "[]" {
                lines[at] = format!(
                    "{}patches:{}",
                    " ".repeat(child),
                    comment_part(doc.lines[at])
                );
            } else if !rest.is_empty() {
                return Err(edit_error(
                    path,
                    format!(
                        "line {}: the patches of repo {repo} are written in flow style; \
                         rewrite them as a block list (one `- bundle:` item per line) and run again",
                        at + 1
                    ),
                ));
            }
            let mut last = at;
            let mut item_indent = None;
            for i in at + 1..block.end {
                let Some(indent) = doc.content_indent(i) else {
                    continue;
                };
                let dash = doc.lines[i].trim_start().starts_with('-');
                if indent < child || (indent == child && !dash) {
                    break;
                }
                if dash && item_indent.is_none() {
                    item_indent = Some(indent);
                }
                last = i;
            }
            let new = entry(item_indent.unwrap_or(child + 2));
            lines.splice(last + 1..last + 1, new);
        }
        None => {
            let mut new = vec![format!("{}patches:", " ".repeat(child))];
            new.extend(entry(child + 2));
            lines.splice(block.last + 1..block.last + 1, new);
        }
    }
    Ok(join(lines, text))
}

/// Sets (or adds) the repo's `tree:` lock.
pub fn set_tree(text: &str, path: &Path, repo: &str, tree: &str) -> Result<String, PinsError> {
    let doc = Doc::new(text);
    let block = doc.repo_block(path, repo)?;
    let mut lines: Vec<String> = doc.lines.iter().map(|l| l.to_string()).collect();
    let line = format!("{}tree: {tree}", " ".repeat(block.child_indent));
    match doc.key_line(&block, "tree") {
        Some(at) => lines[at] = format!("{line}{}", comment_part(doc.lines[at])),
        None => lines.insert(block.last + 1, line),
    }
    Ok(join(lines, text))
}

struct Doc<'a> {
    lines: Vec<&'a str>,
}

struct Block {
    /// Indent of the repo's own keys.
    child_indent: usize,
    /// Index of the repo block's last content line.
    last: usize,
    /// Index one past the block.
    end: usize,
    start: usize,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        Doc {
            lines: text.lines().collect(),
        }
    }

    /// The indent of a line that holds YAML content (not blank, not only a comment).
    fn content_indent(&self, i: usize) -> Option<usize> {
        let line = self.lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            None
        } else {
            Some(line.len() - trimmed.len())
        }
    }

    fn repo_block(&self, path: &Path, repo: &str) -> Result<Block, PinsError> {
        let repos = (0..self.lines.len())
            .find(|&i| self.content_indent(i) == Some(0) && key_of(self.lines[i]) == Some("repos"))
            .ok_or_else(|| edit_error(path, "no top-level `repos:` key".to_owned()))?;
        if !value_part(self.lines[repos], "repos").is_empty() {
            return Err(edit_error(
                path,
                format!("line {}: `repos:` is written in flow style", repos + 1),
            ));
        }
        let mut repo_indent = None;
        let mut start = None;
        let mut i = repos + 1;
        while i < self.lines.len() {
            if let Some(indent) = self.content_indent(i) {
                if indent == 0 {
                    break;
                }
                let level = *repo_indent.get_or_insert(indent);
                if indent == level && unquote_key(key_of(self.lines[i])) == Some(repo) {
                    start = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let start = start.ok_or_else(|| edit_error(path, format!("repo {repo} not found")))?;
        let level = repo_indent.unwrap_or(0);
        if !value_part(
            self.lines[start],
            key_of(self.lines[start]).unwrap_or_default(),
        )
        .is_empty()
        {
            return Err(edit_error(
                path,
                format!(
                    "line {}: repo {repo} is written in flow style; rewrite it in block style",
                    start + 1
                ),
            ));
        }
        let mut last = start;
        let mut end = self.lines.len();
        let mut child_indent = None;
        for j in start + 1..self.lines.len() {
            let Some(indent) = self.content_indent(j) else {
                continue;
            };
            if indent <= level {
                end = j;
                break;
            }
            child_indent.get_or_insert(indent);
            last = j;
        }
        Ok(Block {
            child_indent: child_indent.unwrap_or(level + 2),
            last,
            end,
            start,
        })
    }

    fn key_line(&self, block: &Block, key: &str) -> Option<usize> {
        (block.start + 1..block.end).find(|&i| {
            self.content_indent(i) == Some(block.child_indent) && key_of(self.lines[i]) == Some(key)
        })
    }
}

fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (key, _) = t.split_once(':')?;
    Some(key.trim_end())
}

fn unquote_key(key: Option<&str>) -> Option<&str> {
    key.map(|k| k.trim_matches(|c| c == '"' || c == '\''))
}

/// What follows `key:` on its line, comments removed.
fn value_part<'a>(line: &'a str, key: &str) -> &'a str {
    let t = line.trim_start();
    let t = t.trim_start_matches(['"', '\'']);
    let rest = t
        .strip_prefix(key)
        .map(|r| r.trim_start_matches(['"', '\'']))
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or("");
    let rest = match rest.find(" #") {
        Some(p) => &rest[..p],
        None if rest.trim_start().starts_with('#') => "",
        None => rest,
    };
    rest.trim()
}

/// The comment that ends a line, with the spacing before it, as written.
fn comment_part(line: &str) -> String {
    match line.find(" #") {
        Some(p) => line[line[..p].trim_end().len()..].to_owned(),
        None => String::new(),
    }
}

/// A YAML scalar for a path: plain when that is unambiguous, single-quoted otherwise.
fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`', ' ',
        ])
        && !value.ends_with(' ')
        && !value.contains(": ")
        && !value.contains(" #");
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

fn join(lines: Vec<String>, original: &str) -> String {
    let mut out = lines.join("\n");
    if original.ends_with('\n') || original.is_empty() {
        out.push('\n');
    }
    out
}

fn edit_error(path: &Path, reason: String) -> PinsError {
    PinsError::Edit {
        path: path.to_owned(),
        reason,
    }
}
