//! What `/proc` says about a process: its command line, its environment, its process group and
//! when it started, so pinstack can tell its own server from a process that merely looks like
//! one (a reused pid, a vLLM somebody started by hand).

use std::path::PathBuf;

/// The few fields of `/proc/<pid>/stat` pinstack needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z` (exited, not yet reaped), ...
    pub state: char,
    pub pgrp: u32,
    /// Clock ticks after boot.
    pub start_ticks: u64,
}

impl Stat {
    /// Whether the process still runs (a zombie has exited).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// `/proc/<pid>/stat`, if the process exists.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name is in parentheses and may hold spaces and parentheses itself.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields from 3 on (state is field 3 in proc(5)); start time is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The processes of a process group that have not exited.
pub fn group_members(pgid: u32) -> Vec<(u32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .filter(|(_, s)| s.pgrp == pgid && s.alive())
        .collect()
}

/// The command line a process runs (`/proc/<pid>/cmdline`).
pub fn cmdline(pid: u32) -> std::io::Result<Vec<String>> {
    let path = PathBuf::from(format!("/proc/{pid}/cmdline"));
    let bytes = std::fs::read(&path).map_err(|e| named(&path, e))?;
    Ok(split_nul(&bytes))
}

/// The environment a process was started with (`/proc/<pid>/environ`), in order.
pub fn environ(pid: u32) -> std::io::Result<Vec<(String, String)>> {
    let path = PathBuf::from(format!("/proc/{pid}/environ"));
    let bytes = std::fs::read(&path).map_err(|e| named(&path, e))?;
    Ok(split_nul(&bytes)
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv, String::new()),
        })
        .collect())
}

/// The direct children of a process (a launcher that did not `exec` the server).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The sockets listening on TCP `port` (IPv4 and IPv6), each with the processes holding it,
/// as far as this user may look (`/proc/<pid>/fd` of another user's process is closed to a
/// non-root caller: such a socket has no holder listed). `None` when `/proc/net` cannot be read.
pub fn listeners(port: u16) -> Option<Vec<(u64, std::net::IpAddr, Vec<u32>)>> {
    let mut inodes = Vec::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        inodes.extend(listening_inodes(&text, port));
    }
    if !read_any {
        return None;
    }
    let mut sockets: Vec<(u64, std::net::IpAddr, Vec<u32>)> = inodes
        .into_iter()
        .map(|(i, a)| (i, a, Vec::new()))
        .collect();
    if sockets.is_empty() {
        return Some(sockets);
    }
    let pids = std::fs::read_dir("/proc").ok()?;
    for pid in pids.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let inode = std::fs::read_link(fd.path()).ok().and_then(|target| {
                target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            });
            if let Some((_, _, holders)) =
                inode.and_then(|n| sockets.iter_mut().find(|(i, _, _)| *i == n))
                && !holders.contains(&pid)
            {
                holders.push(pid);
            }
        }
    }
    Some(sockets)
}

/// The inodes of the sockets a `/proc/net/tcp` table lists as listening on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<(u64, std::net::IpAddr)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (address, local_port) = f.get(1)?.rsplit_once(':')?;
            let listening = *f.get(3)? == LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| Some((f.get(9)?.parse().ok()?, kernel_address(address)?)))
                .flatten()
        })
        .collect()
}

/// An address as `/proc/net/tcp` and `tcp6` print it: 32-bit words in hex, each in the host's
/// byte order (little-endian on the machines pinstack runs on).
fn kernel_address(hex: &str) -> Option<std::net::IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).map(u32::swap_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// Whether `pid` is `ancestor` or one of its descendants (following parent pids).
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        if at == ancestor {
            return true;
        }
        let Some(parent) = std::fs::read_to_string(format!("/proc/{at}/stat"))
            .ok()
            .and_then(|text| {
                let rest = &text[text.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
        else {
            return false;
        };
        if parent <= 1 {
            return false;
        }
        at = parent;
    }
    false
}

/// The id of the current boot: a pid and its start time only identify a process within one.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn named(path: &std::path::Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_by_port() {
        // /proc/net/tcp: one socket listening on 18080 (0x46A0), one connected from it, one
        // listening on another port.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:46A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:46A0 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let any = std::net::IpAddr::from([0, 0, 0, 0]);
        assert_eq!(listening_inodes(table, 18080), [(4242, loopback)]);
        assert_eq!(listening_inodes(table, 8080), [(4444, any)]);
        assert!(listening_inodes(table, 9).is_empty());
        // tcp6: ::1 listening on 18080.
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:46A0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            listening_inodes(table6, 18080),
            [(5151, std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST))]
        );
    }

    #[test]
    fn stat_lines() {
        let line = "4242 (vllm (serve) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                pgrp: 4242,
                start_ticks: 987654
            }
        );
        assert!(s.alive());
        let me = stat(std::process::id()).unwrap();
        assert!(me.alive());
        assert!(!cmdline(std::process::id()).unwrap().is_empty());
    }
}
