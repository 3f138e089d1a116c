//! My Care Record as a program: settings, assembling the gateway, the demo, and the
//! operator's commands. The binary (`main.rs`) is a thin CLI over this library so that
//! integration tests can start exactly what `mcr demo` starts.

pub mod app;
pub mod audit_cmd;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod demo_adt;
pub mod network;
#[cfg(feature = "demo")]
pub mod sources_cmd;
pub mod watch_settings;
