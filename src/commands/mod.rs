//! One file per group of commands: they load input, call the core, and render the result.

pub mod audit;
pub mod bundle;
pub mod doctor;
pub mod install;
pub mod recipe;
pub mod serve;
pub mod source;
pub mod switch;
