//! The one printer: results to stdout, progress to stderr; a spinner on a terminal, plain lines
//! elsewhere (CI logs and pipes).

use std::io::{IsTerminal, Write};
use std::time::Duration;

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
