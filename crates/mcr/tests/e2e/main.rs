//! The product end to end, in one test binary: the demo's sources and gateway over real HTTPS,
//! `mcr serve` and the other commands as their own processes, and the parts this project did
//! not write (npm's OpenID providers and FHIR validators, PyPI's HL7 sender, SMTP server and
//! SMART client, a throwaway PostgreSQL cluster). One module per area; what they share is in
//! [`helpers`], defined once. One module: `cargo test -p mcr --test e2e pages::`.
//!
//! One binary is linked once rather than once per area. Its tests share one process, so none
//! may change what the process holds for all: no environment variables set, no global
//! `tracing` subscriber, no fixed ports (everything listens on port 0), every file under its
//! own temporary directory. Processes a test stops or kills (`mcr serve` in `audit_crash` and
//! `availability`, the npm and Python servers) are children it started, never this process.
//! The PostgreSQL cluster is started once for the binary (`mcr-testkit`), a fresh database per
//! test.
//!
//! Not here: `tests/bench_harness.rs`, which drives a load for a fixed window against views with
//! a 500 ms deadline, so it has the machine to itself in a binary of its own.

mod helpers;

mod access;
mod adt_feed;
mod audit_crash;
mod audit_trail;
mod availability;
mod backend_services;
mod cli;
mod documents;
mod fhir_output;
mod local_matching;
mod merge;
mod network;
mod oidc_interop;
mod oracle;
mod pages;
mod postgres;
mod record_stream;
mod record_view;
mod relationships;
mod restricted;
mod signin;
mod smart_launch;
mod watch;
