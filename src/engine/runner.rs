//! Running one step's process: its own process group, its full output to a log (secrets
//! redacted), a timeout, and Ctrl-C or SIGTERM stopping the whole group.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::recipe::{Action, Step};

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed(String),
    Interrupted,
    TimedOut,
}

/// Counts Ctrl-C and SIGTERM; the runner stops the step's process group once the count reaches
/// its threshold. A first stop ends the step and lets its cleanup run; a second one ends the
/// cleanup too ([`Interrupt::second`]).
#[derive(Debug, Clone)]
pub struct Interrupt {
    count: Arc<AtomicUsize>,
    threshold: usize,
}

impl Default for Interrupt {
    /// Never raised: nothing counts into it.
    fn default() -> Self {
        Interrupt {
            count: Arc::default(),
            threshold: 1,
        }
    }
}

impl Interrupt {
    /// Counts SIGINT and SIGTERM instead of being killed by them (a thread of signal-hook's
    /// reads them from its self-pipe).
    pub fn install() -> std::io::Result<Interrupt> {
        let interrupt = Interrupt::default();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let count = Arc::clone(&interrupt.count);
        std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                for _ in signals.forever() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })?;
        Ok(interrupt)
    }

    /// Whether a stop was asked for (as many times as this one waits for).
    pub fn raised(&self) -> bool {
        self.count.load(Ordering::SeqCst) >= self.threshold
    }

    /// The same signals, raised only by a second stop: for work a first Ctrl-C must not cut
    /// short, such as a step's cleanup.
    pub fn second(&self) -> Interrupt {
        Interrupt {
            count: Arc::clone(&self.count),
            threshold: 2,
        }
    }
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    rustix::process::test_kill_process(pid).is_ok()
}

/// The command line of a step, as it will be run.
pub fn command_line(step: &Step, sudo: bool) -> Vec<String> {
    let mut argv: Vec<String> = match &step.action {
        Action::Run(script) => vec![
            "bash".into(),
            "-euo".into(),
            "pipefail".into(),
            "-c".into(),
            script.clone(),
        ],
        Action::Argv(a) => a.clone(),
        Action::Sources(repos) if repos.is_empty() => {
            vec!["(built in: fetch and apply every pinned repo)".into()]
        }
        Action::Sources(repos) => vec![format!(
            "(built in: fetch and apply the pinned repos {})",
            repos.join(", ")
        )],
    };
    if sudo {
        let names: Vec<&str> = step.env.iter().map(|e| e.name.as_str()).collect();
        let mut prefix = vec!["sudo".to_owned(), "-n".to_owned()];
        if !names.is_empty() {
            prefix.push(format!("--preserve-env={}", names.join(",")));
        }
        prefix.push("--".to_owned());
        prefix.append(&mut argv);
        argv = prefix;
    }
    argv
}

pub use crate::recipe::redact;

/// Runs a step's command; every output line goes to `log` and to `on_line`.
pub fn run(
    step: &Step,
    sudo: bool,
    log: &mut dyn Write,
    secrets: &[String],
    interrupt: &Interrupt,
    on_line: &mut dyn FnMut(&str),
    on_group: &mut dyn FnMut(u32),
) -> std::io::Result<Outcome> {
    let argv = command_line(step, sudo);
    if !step.cwd.is_dir() {
        return Ok(Outcome::Failed(format!(
            "its folder {} does not exist",
            step.cwd.display()
        )));
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&step.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // A secret reaches only the steps that declare it: an inherited variable whose name looks
    // secret (HF_TOKEN, say) is removed unless the step's env names it, so a step that records
    // its environment (the quality gate does) cannot write it down.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if crate::recipe::looks_secret(&name) && !step.env.iter().any(|e| e.name == name) {
            cmd.env_remove(name.as_ref());
        }
    }
    // Steps can call pinstack itself (`"$PINSTACK" doctor`, say).
    if let Ok(me) = std::env::current_exe() {
        cmd.env("PINSTACK", me);
    }
    for e in &step.env {
        cmd.env(&e.name, &e.value);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ok(Outcome::Failed(format!("cannot start {}: {e}", argv[0]))),
    };
    on_group(child.id());
    let group = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        })
    })
    .collect();
    drop(tx);
    let deadline = step.timeout.map(|t| Instant::now() + t);
    let mut write_line = |line: String, log: &mut dyn Write| -> std::io::Result<()> {
        let line = redact(&line, secrets);
        writeln!(log, "{line}")?;
        on_line(&line);
        Ok(())
    };
    let outcome = loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            write_line(line, log)?;
            // A chatty step must not starve the checks below.
            for line in rx.try_iter().take(1000) {
                write_line(line, log)?;
            }
        }
        if let Some(status) = child.try_wait()? {
            // Readers end once every process holding the pipes is gone; stragglers left in the
            // step's group are stopped, so no step leaves processes behind.
            stop_group(group, &mut child, Duration::from_secs(2));
            for line in rx.iter() {
                write_line(line, log)?;
            }
            break if status.success() {
                Outcome::Success
            } else {
                Outcome::Failed(match status.code() {
                    Some(c) => format!("exit status {c}"),
                    None => format!("killed by a signal ({status})"),
                })
            };
        }
        if interrupt.raised() {
            stop_group(group, &mut child, Duration::from_secs(10));
            break Outcome::Interrupted;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop_group(group, &mut child, Duration::from_secs(10));
            break Outcome::TimedOut;
        }
    };
    for r in readers {
        let _ = r.join();
    }
    for line in rx.try_iter() {
        write_line(line, log)?;
    }
    log.flush()?;
    Ok(outcome)
}

/// Stops a process group left running by a pinstack that was killed; true if there was one.
pub fn stop_leftover_group(group: u32) -> bool {
    let Some(pid) = i32::try_from(group).ok().and_then(Pid::from_raw) else {
        return false;
    };
    if rustix::process::test_kill_process_group(pid).is_err() {
        return false;
    }
    let _ = rustix::process::kill_process_group(pid, Signal::TERM);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if rustix::process::test_kill_process_group(pid).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    true
}

/// SIGTERM to the group, then SIGKILL after `grace`.
fn stop_group(group: Option<Pid>, child: &mut std::process::Child, grace: Duration) {
    let Some(group) = group else { return };
    let _ = rustix::process::kill_process_group(group, Signal::TERM);
    let until = Instant::now() + grace;
    while Instant::now() < until {
        let leader_done = child.try_wait().map(|s| s.is_some()).unwrap_or(true);
        if leader_done && rustix::process::test_kill_process_group(group).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let _ = child.wait();
}

/// Writes the header of a step's log.
pub fn log_header(
    log: &mut dyn Write,
    step: &Step,
    argv: &[String],
    secrets: &[String],
) -> std::io::Result<()> {
    writeln!(log, "# pinstack step {} ({})", step.id, step.title)?;
    writeln!(log, "# folder: {}", step.cwd.display())?;
    // Every header line starts with `# `, a multi-line script included.
    let command = redact(&shell_words(argv), secrets).replace('\n', "\n# ");
    writeln!(log, "# command: {command}")?;
    for e in &step.env {
        let value = if e.secret {
            "***".to_owned()
        } else {
            e.value.clone()
        };
        writeln!(log, "# env {}={}", e.name, value)?;
    }
    Ok(())
}

/// A command line as one readable string.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
