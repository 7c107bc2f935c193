//! A tiny HTTP/1.1 client over `std::net::TcpStream`: enough to ask a model server on the local
//! network whether it is ready (`GET /v1/models`, `POST /v1/completions`), with a deadline on
//! every request.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest answer read; a model list or a smoke completion is a few kilobytes.
const MAX_BODY: usize = 8 << 20;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not an http:// URL with a host and port")]
    Url { url: String },
    #[error("{url}: nothing listens ({source})")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: no answer within {}s", timeout.as_secs_f32())]
    TimedOut { url: String, timeout: Duration },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: not an HTTP answer ({what})")]
    Malformed { url: String, what: String },
}

/// A status code and a body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body, for messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let cut: String = text.chars().take(200).collect();
        if cut.len() < text.len() {
            format!("{cut}...")
        } else {
            cut
        }
    }
}

/// `GET url` (with a bearer token when given), giving up after `timeout`.
pub fn get(url: &str, timeout: Duration, token: Option<&str>) -> Result<Response, HttpError> {
    request("GET", url, None, timeout, token)
}

/// `POST url` with a JSON body (and a bearer token when given), giving up after `timeout`.
pub fn post_json(
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
    token: Option<&str>,
) -> Result<Response, HttpError> {
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    request("POST", url, Some(&bytes), timeout, token)
}

struct Target<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
    authority: &'a str,
}

fn parse_url(url: &str) -> Option<Target<'_>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some(Target {
        host,
        port: port.parse().ok()?,
        path,
        authority,
    })
}

fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
    token: Option<&str>,
) -> Result<Response, HttpError> {
    let target = parse_url(url).ok_or_else(|| HttpError::Url {
        url: url.to_owned(),
    })?;
    let deadline = Instant::now() + timeout;
    let io = |source: std::io::Error| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            HttpError::TimedOut {
                url: url.to_owned(),
                timeout,
            }
        } else {
            HttpError::Io {
                url: url.to_owned(),
                source,
            }
        }
    };
    let addrs: Vec<_> = (target.host, target.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Connect {
            url: url.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let source = last.unwrap_or_else(|| std::io::Error::other("no address"));
        if source.kind() == std::io::ErrorKind::TimedOut {
            return Err(io(source));
        }
        return Err(HttpError::Connect {
            url: url.to_owned(),
            source,
        });
    };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
        target.path, target.authority
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline)))
        .map_err(io)?;
    stream.write_all(head.as_bytes()).map_err(io)?;
    if let Some(b) = body {
        stream.write_all(b).map_err(io)?;
    }
    stream.flush().map_err(io)?;
    // `Connection: close`: the answer ends when the server closes the connection.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline)))
            .map_err(io)?;
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_BODY {
            return Err(HttpError::Malformed {
                url: url.to_owned(),
                what: format!("more than {MAX_BODY} bytes"),
            });
        }
        if complete(&raw) {
            break;
        }
    }
    parse_response(&raw).map_err(|what| HttpError::Malformed {
        url: url.to_owned(),
        what,
    })
}

/// Time left before the deadline; never zero (a zero timeout means "none" to the socket).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Whether a response with a `Content-Length` has all its body (so a server that keeps the
/// connection open anyway does not cost the whole timeout).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| raw.len() >= end + 4 + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("the answer ends before its headers do")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("Content-Length {v:?}"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = length {
        if rest.len() < len {
            return Err(format!("a body of {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("a chunk size line ends early")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("a chunk ends early".to_owned());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8000/v1/models").unwrap();
        assert_eq!((t.host, t.port, t.path), ("127.0.0.1", 8000, "/v1/models"));
        let t = parse_url("http://[::1]:9/").unwrap();
        assert_eq!((t.host, t.port), ("::1", 9));
        assert!(parse_url("https://x:1/").is_none());
        assert!(parse_url("http://x/").is_none());
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = parse_response(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 404 No\r\n\r\nrest").unwrap();
        assert_eq!(r.body, b"rest");
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"));
    }
}
