//! One module per top-level command.

pub mod demo;
pub mod doctor;
pub mod env;
pub mod host;
pub mod mcp;
pub mod run;
pub mod workspace;
