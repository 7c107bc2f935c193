//! `pinstack doctor`.

use anyhow::Result;
use serde_json::json;

use crate::doctor::{self, DoctorOptions, Level};
use crate::exit::ExitStatus;
use crate::output::Printer;

/// `doctor [--json] [--root DIR] [--context N]`
pub fn doctor(p: &Printer, opts: &DoctorOptions) -> Result<ExitStatus> {
    let checks = doctor::run(opts);
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Pass);
    if p.json() {
        let rows: Vec<_> = checks
            .iter()
            .map(|c| json!({"id": c.id, "level": c.level.as_str(), "detail": c.detail, "fix": c.fix}))
            .collect();
        p.value(&json!({ "ok": worst != Level::Fail, "checks": rows }))?;
    } else {
        let mut text = String::new();
        for c in &checks {
            let level = match c.level {
                Level::Pass => "pass",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            text.push_str(&format!("{level}  {:<8} {}\n", c.id, c.detail));
            if let Some(fix) = &c.fix {
                text.push_str(&format!("      {:<8} fix: {fix}\n", ""));
            }
        }
        let count = |l: Level| checks.iter().filter(|c| c.level == l).count();
        text.push_str(&format!(
            "{} checks: {} pass, {} warn, {} fail",
            checks.len(),
            count(Level::Pass),
            count(Level::Warn),
            count(Level::Fail)
        ));
        p.out(&text)?;
    }
    Ok(if worst == Level::Fail {
        ExitStatus::NotAsPinned
    } else {
        ExitStatus::Success
    })
}
