//! FHIR R4 JSON, the few parts this project reads and writes.
//!
//! Resources from sources are kept as the text they came as (the way Microsoft's FHIR server
//! keeps raw JSON beside a few indexed fields) and read once, as a [`Doc`] borrowing from that
//! text; this crate reads only what the gateway needs from them (type, id, codes, dates,
//! display text), from a `Doc` or a `serde_json::Value` alike ([`Json`]), and builds the
//! Bundles, Provenances and OperationOutcomes the gateway sends. Everything read here comes
//! from outside and is treated as untrusted: readers return `Option`, never panic, and clip
//! what they return.
//!
//! This crate must never do I/O.

mod classify;
mod doc;
mod outcome;
mod read;

pub use classify::{
    classify, is_shown_type, resource_types_for, summarise, Summary, END_OF_LIFE_CODES,
};
pub use doc::{Doc, Json};
pub use outcome::{operation_outcome, Issue, IssueSeverity, IssueType};
pub use read::{
    codings, codings_at, first_coding, next_link, next_link_in, patient_reference, resource_id,
    resource_type, restricted_label, str_at, tie_to_patient, Coding, CodingAt, PatientAt, Tie,
    LOCATION_FIELDS,
};

/// The media type FHIR R4 JSON is exchanged in.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Longest text kept from any single field a source sends.
pub const MAX_TEXT: usize = 2_000;
