//! The bundle codec: base64 of gzip of a `git diff`, and the two hashes that identify a bundle.

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::GzBuilder;
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// The largest decoded diff pinstack accepts (256 MiB); past it a bundle is treated as a gzip bomb.
/// The real bundles decode to a few hundred kilobytes.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// Column at which encoded bundles are wrapped, as GNU `base64` does by default.
pub const WRAP_COLUMN: usize = 76;

/// Why a bundle could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not valid base64 ({0}); a bundle is base64 text, wrapped lines allowed")]
    Base64(base64::DecodeError),
    #[error("not valid gzip after base64 decoding: {0}")]
    Gzip(std::io::Error),
    #[error(
        "decodes to more than {limit} bytes (a gzip bomb, or not a patch bundle); the limit is {limit} bytes",
        limit = MAX_DECODED_BYTES
    )]
    TooLarge,
    #[error("decodes to nothing: an empty bundle would silently apply nothing")]
    Empty,
}

/// Decodes a bundle: strips all ASCII whitespace, base64-decodes, then reads every gzip member.
pub fn decode(encoded: &[u8]) -> Result<Vec<u8>, BundleError> {
    let compact: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(BundleError::Empty);
    }
    let gz = STANDARD.decode(&compact).map_err(BundleError::Base64)?;
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4));
    let mut reader = MultiGzDecoder::new(gz.as_slice()).take(MAX_DECODED_BYTES + 1);
    reader.read_to_end(&mut out).map_err(BundleError::Gzip)?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(BundleError::TooLarge);
    }
    if out.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(out)
}

/// Encodes a diff deterministically: gzip with mtime 0 and no file name, base64 wrapped at 76
/// columns with a final newline, so `base64 -d | gzip -dc` reads it back.
pub fn encode(diff: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(diff.len() / 3 + 64), Compression::best());
    std::io::Write::write_all(&mut gz, diff).expect("writing to memory cannot fail");
    let gz = gz.finish().expect("writing to memory cannot fail");
    let text = STANDARD.encode(gz);
    let mut out = Vec::with_capacity(text.len() + text.len() / WRAP_COLUMN + 1);
    for line in text.as_bytes().chunks(WRAP_COLUMN) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// [`decode`] and [`sha256_hex`] of the same bundle, side by side on two cores for a large
/// one. The caller uses the decoded diff only once the hash matches.
pub fn decode_hashed(encoded: &[u8]) -> (Result<Vec<u8>, BundleError>, String) {
    crate::par::join(
        encoded.len() >= crate::par::WORTH_A_THREAD / 4,
        || decode(encoded),
        || sha256_hex(encoded),
    )
}
