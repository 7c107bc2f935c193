//! Git's binary patches (`git diff --binary`): each side a `literal` (the whole new content)
//! or a `delta` against the old content, zlib-compressed and written in git's base85 lines.
//! Only the forward side is used; the result is checked against the blob id on the section's
//! `index` line, as every file of a bundle is.

use std::io::Read;

/// Applies the forward side of a `GIT binary patch` section (`body`: the lines after that
/// header) to `old`.
pub fn apply(body: &[u8], old: &[u8]) -> Result<Vec<u8>, String> {
    let mut lines = body.split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    let header = std::str::from_utf8(header).map_err(|_| "unreadable binary patch header")?;
    let (kind, size) = header
        .trim_end_matches('\r')
        .split_once(' ')
        .ok_or_else(|| format!("unreadable binary patch header {header:?}"))?;
    let size: usize = size
        .parse()
        .map_err(|_| format!("unreadable size in binary patch header {header:?}"))?;
    let mut packed = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        decode_line(line, &mut packed)?;
    }
    // The header's size is trusted only as a limit, never as an allocation.
    let mut data = Vec::with_capacity(size.min(1 << 20));
    flate2::read::ZlibDecoder::new(packed.as_slice())
        .take(size as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("binary patch data does not inflate: {e}"))?;
    if data.len() != size {
        return Err(format!(
            "binary patch data inflates to {} bytes, its header says {size}",
            data.len()
        ));
    }
    match kind {
        "literal" => Ok(data),
        "delta" => apply_delta(&data, old),
        other => Err(format!("unknown binary patch kind {other:?}")),
    }
}

/// Git's base85 digits, in value order.
const DIGITS: &[u8; 85] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

/// One data line: a length letter (`A`-`Z` for 1-26 bytes, `a`-`z` for 27-52), then groups of
/// five digits, each four bytes.
fn decode_line(line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || format!("bad binary patch line {:?}", String::from_utf8_lossy(line));
    let (&letter, digits) = line.split_first().ok_or_else(bad)?;
    let len = match letter {
        b'A'..=b'Z' => usize::from(letter - b'A') + 1,
        b'a'..=b'z' => usize::from(letter - b'a') + 27,
        _ => return Err(bad()),
    };
    if digits.len() != len.div_ceil(4) * 5 {
        return Err(bad());
    }
    let mut bytes = Vec::with_capacity(digits.len() / 5 * 4);
    for group in digits.chunks(5) {
        let mut acc: u64 = 0;
        for &d in group {
            let v = DIGITS.iter().position(|&c| c == d).ok_or_else(bad)?;
            acc = acc * 85 + v as u64;
        }
        let word = u32::try_from(acc).map_err(|_| bad())?;
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&bytes[..len]);
    Ok(())
}

/// Applies a git delta (source size, result size, then copy and insert instructions).
fn apply_delta(delta: &[u8], old: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("binary delta: {what}");
    let mut at = 0;
    let varint = |at: &mut usize| -> Result<usize, String> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = *delta.get(*at).ok_or_else(|| bad("truncated size"))?;
            *at += 1;
            value |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 56 {
                return Ok(value);
            }
        }
    };
    let source = varint(&mut at)?;
    let size = varint(&mut at)?;
    if source != old.len() {
        return Err(format!(
            "binary delta expects a file of {source} bytes, the file has {}",
            old.len()
        ));
    }
    let mut out = Vec::with_capacity(size.min(1 << 20));
    while let Some(&cmd) = delta.get(at) {
        at += 1;
        if cmd & 0x80 != 0 {
            let mut field = |bits: u8, shifts: &[usize]| -> Result<usize, String> {
                let mut v = 0usize;
                for (i, s) in shifts.iter().enumerate() {
                    if bits & (1 << i) != 0 {
                        v |= usize::from(*delta.get(at).ok_or_else(|| bad("truncated copy"))?) << s;
                        at += 1;
                    }
                }
                Ok(v)
            };
            let offset = field(cmd & 0x0f, &[0, 8, 16, 24])?;
            let len = match field((cmd >> 4) & 0x07, &[0, 8, 16])? {
                0 => 0x10000,
                n => n,
            };
            let piece = old
                .get(
                    offset
                        ..offset
                            .checked_add(len)
                            .ok_or_else(|| bad("copy overflows"))?,
                )
                .ok_or_else(|| bad("copy outside the file"))?;
            if out.len() + piece.len() > size {
                return Err(bad("makes more than its header's size"));
            }
            out.extend_from_slice(piece);
        } else if cmd != 0 {
            let len = usize::from(cmd);
            let piece = delta
                .get(at..at + len)
                .ok_or_else(|| bad("truncated insert"))?;
            if out.len() + piece.len() > size {
                return Err(bad("makes more than its header's size"));
            }
            out.extend_from_slice(piece);
            at += len;
        } else {
            return Err(bad("reserved instruction 0"));
        }
    }
    if out.len() != size {
        return Err(format!(
            "binary delta makes {} bytes, its header says {size}",
            out.len()
        ));
    }
    Ok(out)
}
