//! pinstack: pins, patch bundles and checkouts for a pinned, patched LLM serving stack.

pub mod audit;
pub mod bundle;
pub mod cli;
mod commands;
pub mod demo;
pub mod diff;
pub mod doctor;
pub mod engine;
pub mod exit;
pub mod fault;
pub mod fsutil;
pub mod git;
pub mod lock;
pub mod output;
pub mod par;
pub mod pins;
pub mod recipe;
mod report;
pub mod run;
pub mod serve;
pub mod source;
pub mod yaml;

pub use run::run;
