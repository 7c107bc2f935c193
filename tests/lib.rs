//! pinstack's integration tests: one binary, one module per area, all over the real binary.

mod harness;

mod apply;
mod audit;
mod b70;
mod bundle;
mod check;
mod cli;
mod demo;
mod doctor;
mod fetch;
mod hostile;
mod install;
mod lock;
mod patching;
mod pins;
mod project;
mod properties;
mod recipe;
mod serve;
mod status;
mod switch;
