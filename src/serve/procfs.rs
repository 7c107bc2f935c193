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
