//! The exit-code table, and how an error maps onto it.

use crate::bundle::BundleError;
use crate::diff::DiffError;
use crate::git::GitError;
use crate::pins::PinsError;
use crate::source::{BundleLoadError, SourceError};
use crate::yaml::YamlError;

/// pinstack's exit codes (a contract: scripts and CI rely on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success,
    /// 1: checked and found not as pinned (does not apply, hash mismatch, tree differs, dirty
    /// tree refused).
    NotAsPinned,
    /// 2: usage or invalid input (bad YAML, undecodable bundle, unknown repo).
    Invalid,
    /// 3: a step or external command failed.
    Failed,
    /// 130: interrupted.
    Interrupted,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::NotAsPinned => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Failed => 3,
            ExitStatus::Interrupted => 130,
        }
    }

    /// The worse of two statuses, for commands that report several results.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        let rank = |s: ExitStatus| match s {
            ExitStatus::Success => 0,
            ExitStatus::NotAsPinned => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Failed => 3,
            ExitStatus::Interrupted => 4,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The table printed in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    checked and found not as pinned (does not apply, hash mismatch, tree differs,
       dirty tree refused)
  2    usage or invalid input (bad YAML, undecodable bundle, unknown repo)
  3    a step or external command failed
  130  interrupted";

/// A usage error found by the command layer (a missing file argument, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Maps an error chain onto the exit-code table.
pub fn classify(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            return match e {
                SourceError::Git(g) => git_status(g),
                SourceError::Bundle(b) => bundle_status(b),
                SourceError::NotAsPinned { .. } | SourceError::Refused { .. } => {
                    ExitStatus::NotAsPinned
                }
                SourceError::Pins(_)
                | SourceError::NotACheckout { .. }
                | SourceError::OtherOrigin { .. } => ExitStatus::Invalid,
                SourceError::Io { .. } | SourceError::Unavailable { .. } => ExitStatus::Failed,
            };
        }
        if let Some(b) = cause.downcast_ref::<BundleLoadError>() {
            return bundle_status(b);
        }
        if let Some(g) = cause.downcast_ref::<GitError>() {
            return git_status(g);
        }
        if let Some(e) = cause.downcast_ref::<crate::serve::switch::SwitchError>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::serve::status::StatusError>() {
            return e.exit_status();
        }
        if let Some(e) = cause.downcast_ref::<crate::serve::install::InstallError>() {
            return if e.is_usage() {
                ExitStatus::Invalid
            } else {
                ExitStatus::Failed
            };
        }
        if cause.is::<PinsError>()
            || cause.is::<YamlError>()
            || cause.is::<crate::recipe::RecipeError>()
            || cause.is::<BundleError>()
            || cause.is::<DiffError>()
            || cause.is::<UsageError>()
        {
            return ExitStatus::Invalid;
        }
    }
    ExitStatus::Failed
}

fn bundle_status(e: &BundleLoadError) -> ExitStatus {
    if e.is_mismatch() {
        ExitStatus::NotAsPinned
    } else {
        ExitStatus::Invalid
    }
}

fn git_status(e: &GitError) -> ExitStatus {
    match e {
        GitError::MissingCommit { .. } => ExitStatus::NotAsPinned,
        _ => ExitStatus::Failed,
    }
}

/// Whether the error is a closed stdout (`pinstack ... | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
