//! Strict YAML loading shared by every file pinstack reads: duplicate keys, unknown keys, wrong
//! types, invalid UTF-8 and oversized files are refused with the file, line and column.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// The largest YAML file pinstack reads (4 MiB): pins and recipes are a few kilobytes.
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;

/// A YAML file that could not be read into its typed form.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct YamlError {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl YamlError {
    /// An error at a known location.
    pub fn at(path: &Path, location: &Location, message: String) -> Self {
        YamlError {
            path: path.to_owned(),
            line: location.line().max(1),
            column: location.column().max(1),
            message,
        }
    }
}

/// Deserializes a whole YAML document, strictly.
pub fn from_slice<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, YamlError> {
    if bytes.len() > MAX_YAML_BYTES {
        return Err(YamlError {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: format!(
                "file is {} bytes; the limit for YAML files is {MAX_YAML_BYTES} bytes",
                bytes.len()
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let column = (before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)) as u64
            + 1;
        YamlError {
            path: path.to_owned(),
            line,
            column,
            message: "invalid UTF-8".to_owned(),
        }
    })?;
    let options = serde_saphyr::options! {
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let location = e.location().unwrap_or(Location::UNKNOWN);
        let rendered = e.to_string();
        YamlError {
            path: path.to_owned(),
            line: location.line().max(1),
            column: location.column().max(1),
            message: strip_location(&rendered),
        }
    })
}

/// serde-saphyr appends " at line L column C" to its messages; the location is reported apart.
fn strip_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    match first.rfind(" at line ") {
        Some(pos) => first[..pos].to_owned(),
        None => first.to_owned(),
    }
}

/// A mapping whose entries keep their file order and their key locations.
pub struct Ordered<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<Spanned<String>, V>()? {
                    entries.push((k, v));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(OrderedVisitor(PhantomData))
    }
}
