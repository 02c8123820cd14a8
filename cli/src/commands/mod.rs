//! One module per command (or group of docker's commands). A command gets its settings
//! from `flags::hiargs` and uses `shared`; commands never import each other.

pub mod build;
pub mod check;
pub mod debug;
pub mod images;
pub mod login;
pub mod pull;
pub mod push;
pub mod run;
pub mod store_ops;
