//! The `footfall` binary's library half: configuration, wiring of the roles, the admin client
//! and the access-log importer. `main.rs` is only the command line.

pub mod admin_client;
pub mod config;
pub mod follow;
pub mod import;
pub mod reprocess_cli;
pub mod retention;
pub mod serve;
