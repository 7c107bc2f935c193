//! The one printer: results to stdout, progress to stderr; a spinner on a terminal, plain lines
//! elsewhere (CI logs and pipes).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where pinstack's output goes.
pub struct Printer {
    json: bool,
    quiet: bool,
    tty: bool,
}

impl Printer {
    /// A printer for the current process.
    pub fn new(json: bool, quiet: bool) -> Self {
        Printer {
            json,
            quiet,
            tty: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        }
    }

    /// Whether results are wanted as JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// A result line on stdout.
    pub fn out(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Raw bytes on stdout (an unpacked diff).
    pub fn bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// A JSON document on stdout.
    pub fn value(&self, value: &serde_json::Value) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        self.out(&text)
    }

    /// A progress note on stderr.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Starts a long operation; the returned guard ends it.
    pub fn task(&self, text: &str) -> Task {
        if self.quiet {
            return Task { bar: None };
        }
        if !self.tty {
            eprintln!("{text} ...");
            return Task { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
        bar.set_message(text.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Task { bar: Some(bar) }
    }
}

/// A long operation in progress.
pub struct Task {
    bar: Option<ProgressBar>,
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The progress of one recipe step: a spinner with the last output line on a terminal; plain
/// lines elsewhere, with a heartbeat so a long quiet build does not look hung.
pub struct StepProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    last_beat: Instant,
}

/// How often the plain reporter says a step is still running.
const HEARTBEAT: Duration = Duration::from_secs(60);

impl Printer {
    /// Starts reporting a step.
    pub fn step(&self, header: &str) -> StepProgress {
        let now = Instant::now();
        let mut progress = StepProgress {
            bar: None,
            quiet: self.quiet,
            started: now,
            last_beat: now,
        };
        if self.quiet {
            return progress;
        }
        if self.tty {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                    .expect("template"),
            );
            bar.set_prefix(header.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            progress.bar = Some(bar);
        } else {
            eprintln!("==> {header}");
        }
        progress
    }
}

impl StepProgress {
    /// The step printed a line.
    pub fn line(&mut self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        } else if !self.quiet && self.last_beat.elapsed() >= HEARTBEAT {
            self.last_beat = Instant::now();
            eprintln!(
                "    ... {} elapsed; last output: {}",
                crate::engine::human_duration(self.started.elapsed().as_millis() as u64),
                text.chars().take(160).collect::<String>()
            );
        }
    }

    /// The step ended.
    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("    {summary}");
        }
    }
}
