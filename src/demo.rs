//! `pinstack demo`: the source pipeline on made-up repositories.

use std::path::Path;

use anyhow::Result;

use crate::exit::ExitStatus;
use crate::output::Printer;

/// Runs the demo.
pub fn run(_p: &Printer, _dir: Option<&Path>) -> Result<ExitStatus> {
    anyhow::bail!("demo: not yet written")
}
