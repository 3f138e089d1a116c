//! Asking a source: what the federation needs of any source (the [`Source`] trait, how one view
//! asks it, [`Ask`], and what comes back, [`Fetched`] of [`Received`] resources), with the
//! plain FHIR R4 source over HTTP in its rooms:
//!
//! - `config`: how sources and their limits are configured;
//! - `http`: [`HttpSource`], its requests, identity header, `Server-Timing` and transport errors;
//! - `page`: reading a search's pages and following them;
//! - `batch`: a view's searches in one FHIR `batch`;
//! - `budget`: the bytes and time one call to a source may still use.

mod batch;
mod budget;
mod config;
mod http;
mod page;
#[cfg(test)]
mod paging_tests;

pub use async_trait::async_trait;
pub use config::{
    DirectoryConfig, FederationConfig, GpConnectConfig, IdentifierSearch, PatientSearch,
    SourceConfig, SourceKind,
};
pub(crate) use http::server_timing_app_ms;
pub use http::HttpSource;
use mcr_domain::{FailureReason, SourceId};
use serde_json::Value;
use std::time::Duration;

use crate::document::{DocumentRefusal, OpenedDocument};
use crate::identity::Requester;
use crate::merge::{Digest, Digested, Received, SourceFetch};
use mcr_policy::Grant;

/// Where one source holds a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: SourceId,
    pub local_id: String,
    /// The patient's registered GP practice (ODS code) as the index has it: a GP Connect
    /// source with a directory asks that practice's endpoint.
    pub registered_practice: Option<String>,
}

/// What one source answered: the resources, and how long it said it took.
#[derive(Debug, Default)]
pub struct Fetched {
    pub resources: Vec<Digested>,
    /// Sum of the `Server-Timing: app;dur=` of each page along the slowest of the concurrent
    /// searches (pages of one search follow each other), in milliseconds.
    pub source_ms: Option<f64>,
    /// What the source said about its answer (GP Connect list warnings), for the banner.
    pub warnings: Vec<String>,
    /// Set when the source stopped short (its deadline passed, or it reached the size cap)
    /// after sending some of the record: `resources` is what arrived before.
    pub cut_short: Option<FailureReason>,
}

impl SourceFetch {
    pub(crate) fn failed_unknown(id: &SourceId) -> Self {
        Self {
            source: id.clone(),
            org_code: mcr_domain::OdsCode::parse("UNKNOWN")
                .expect("UNKNOWN is a well-formed ODS code"),
            org_name: id.to_string(),
            base_url: String::new(),
            outcome: Err(FailureReason::Unreachable {
                detail: "no longer configured".into(),
            }),
            elapsed_ms: 0,
            source_ms: None,
            warnings: Vec::new(),
            cut_short: None,
            unsearchable: Vec::new(),
        }
    }
}

/// How one view asks one source: by when, and with which identity token.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The identity token for the grant's requester, if one was signed ahead
    /// ([`Source::sign_identity`]); without it the source signs its own.
    pub signed: Option<String>,
    /// When the view stops waiting for this source: a source that pages stops asking for more
    /// then and hands back what arrived, cut short ([`Fetched::cut_short`]).
    pub until: tokio::time::Instant,
    /// The same deadline as a length, for the words that name it.
    pub deadline: Duration,
    /// The searches made besides `patient={id}` for each type, for items naming the patient
    /// in another form (see [`crate::PatientSearch`]); an item two of them find is kept once.
    pub other_forms: Vec<OtherForm>,
    /// The patient's addresses at the region's other FHIR servers (`{base}/Patient/{id}`), as
    /// the index links them: asked for beside the source's own address in the
    /// [`OtherForm::Absolute`] searches, for a copy of an item written at another organisation.
    pub elsewhere: Vec<String>,
}

/// A search a view makes of a FHIR R4 source besides `patient={local id}`, for the items
/// that name the patient in another form of reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherForm {
    /// By the source's own base URL, `{param}={base}/Patient/{local id}`, and by the
    /// patient's addresses at the region's other servers ([`Ask::elsewhere`]), one search with
    /// the addresses as alternatives (R4: values separated by commas): `param` is `subject`
    /// where the type has that parameter (a server may match a `patient` search only against
    /// relative references, as Medplum does), else `patient`.
    Absolute {
        resource_type: String,
        param: &'static str,
    },
    /// By NHS number, `{param}:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}`: `patient`
    /// for a type whose CapabilityStatement declares the modifier on it; for a source
    /// configured to be asked by NHS number whatever it declares, `subject` where the type has
    /// it, else `patient` (see [`crate::IdentifierSearch`]).
    Identifier {
        resource_type: String,
        param: &'static str,
    },
}

impl OtherForm {
    pub fn resource_type(&self) -> &str {
        match self {
            OtherForm::Absolute { resource_type, .. }
            | OtherForm::Identifier { resource_type, .. } => resource_type,
        }
    }
}

impl Ask {
    /// Ask within `deadline` from now, signing the identity token afresh.
    pub fn within(deadline: Duration) -> Self {
        Self {
            signed: None,
            until: tokio::time::Instant::now() + deadline,
            deadline,
            other_forms: Vec::new(),
            elsewhere: Vec::new(),
        }
    }

    pub(crate) fn timeout(&self) -> FailureReason {
        FailureReason::Timeout {
            after_ms: u64::try_from(self.deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A source system the gateway can ask. `Arc<dyn Source>` in the app state.
#[async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    fn id(&self) -> &SourceId;
    fn config(&self) -> &SourceConfig;
    /// One patient's resources of the given types (all pages), asked on behalf of `grant`'s
    /// user. Called only through [`crate::Federation::fetch_record`], which holds the deadline
    /// (`ask.until`: a source that has sent part of the record by then returns that part, cut
    /// short). Each resource is handed to `digest` as soon as its page is read.
    async fn fetch_patient(
        &self,
        grant: &Grant,
        local_id: &str,
        types: &[&str],
        digest: &Digest<'_>,
        ask: Ask,
    ) -> Result<Fetched, FailureReason>;
    /// [`Source::fetch_patient`] for the patient at `at`: a source that needs more than the
    /// local id (the registered practice, for a GP Connect source with a directory) reads it
    /// here.
    async fn fetch_at(
        &self,
        grant: &Grant,
        at: &Location,
        types: &[&str],
        digest: &Digest<'_>,
        ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        self.fetch_patient(grant, &at.local_id, types, digest, ask)
            .await
    }
    /// The identity token this source sends with its requests for `who`, signed now; `None`
    /// when it sends none.
    fn sign_identity(&self, who: &Requester<'_>) -> Option<Result<String, FailureReason>> {
        let _ = who;
        None
    }
    /// Open document `id` (a `DocumentReference` at this source) of the patient at `at`:
    /// the reference is read again and handed to `check` (the record view's digest: it must
    /// come back an item), then the `Binary` its attachment names is asked for, at most
    /// `cap` bytes of it. Called only through [`crate::Federation::open_document`].
    async fn open_document(
        &self,
        grant: &Grant,
        at: &Location,
        id: &str,
        check: &Digest<'_>,
        cap: u64,
    ) -> Result<OpenedDocument, DocumentRefusal> {
        let _ = (grant, at, id, check, cap);
        Err(DocumentRefusal::Unsupported)
    }
    /// The source's CapabilityStatement (`GET [base]/metadata`), within `timeout`; `None` for
    /// a source whose capabilities are fixed by its protocol (GP Connect).
    async fn capability_statement(
        &self,
        timeout: Duration,
    ) -> Option<Result<Value, FailureReason>> {
        let _ = timeout;
        None
    }
    /// Every `Patient` resource (or those updated after `since`), a page at a time into
    /// `pages`: the index is built as it is read, never held whole.
    async fn patient_feed(
        &self,
        since: Option<&str>,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason>;
    /// Every `resource_type` (a care-event type: `Encounter`, `EpisodeOfCare`, …) whose
    /// period reaches `from` or later (`date=ge{from}`), for every patient, a page at a time
    /// into `pages`: the index sync reads care-event metadata with it.
    async fn care_event_feed(
        &self,
        resource_type: &str,
        from: chrono::NaiveDate,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason>;
}
