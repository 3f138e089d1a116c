//! How sources and the limits that apply to every source are configured.

use mcr_domain::{Organisation, SourceId};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// A source system as configured.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    pub id: SourceId,
    pub organisation: Organisation,
    /// FHIR base URL, e.g. `http://127.0.0.1:8101` (no trailing slash needed).
    pub base_url: Url,
    /// The resource types a view asks this source for, overriding its CapabilityStatement.
    /// Empty (the default): the types its CapabilityStatement lists as searchable by patient
    /// ([`crate::capabilities`]).
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Ask for a view's searches and read in one FHIR `batch` (a `POST` of a Bundle of `GET`
    /// entries to the base URL), for a source whose CapabilityStatement declares the `batch`
    /// interaction, instead of one request each: fewer round trips for the source and the
    /// gateway. Later pages of a search are still followed one `GET` at a time. Off by default.
    #[serde(default)]
    pub batch: bool,
    /// How the source is asked: plain FHIR R4 searches (the default) or GP Connect Access
    /// Record: Structured (`gp-connect`, which needs `[sources.gp_connect]`).
    #[serde(default)]
    pub kind: SourceKind,
    /// The GP Connect settings of a `gp-connect` source.
    #[serde(default)]
    pub gp_connect: Option<crate::gpconnect::GpConnectConfig>,
    /// How long a view waits for this source, in milliseconds, counted from the start of the
    /// view (default: `[federation] deadline_ms`). What it sent by then is shown, marked partial.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// How long one patient-index sync of this source may take, in seconds (default 600): a
    /// source of millions of records needs longer.
    #[serde(default)]
    pub feed_timeout_secs: Option<u64>,
    /// What this source's search by patient finds (default `relative`): see [`PatientSearch`].
    #[serde(default)]
    pub patient_search: PatientSearch,
}

/// What a source's search by patient (`patient={id}`) finds, by the form in which an item
/// names its patient. R4 allows a relative reference (`Patient/123`), an absolute one
/// (`https://host/fhir/Patient/123`), a contained `Patient` (`#p`) and a logical reference
/// (an identifier only); most servers store each as sent and match a search only against
/// references of the form `Patient/123` (Medplum does), so the others never reach a client
/// that asks by patient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientSearch {
    /// It finds relative references only (the default: assume nothing more). A view also asks
    /// by its own base URL (`subject={base}/Patient/{id}`, in the same batch), and by NHS
    /// number (`patient:identifier=…`) for the types whose CapabilityStatement declares the
    /// `:identifier` modifier; what it still cannot be asked for (a contained `Patient`, and
    /// an identifier without that modifier) is said in the view, one line for the source.
    #[default]
    Relative,
    /// It finds every item about the patient whatever form names them (it resolves
    /// references when it stores them, as the simulated sources do): one search per type,
    /// and nothing to say.
    EveryForm,
}

/// The protocol a source speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// FHIR R4 reads and searches.
    #[default]
    FhirR4,
    /// NHS GP Connect Access Record: Structured (FHIR STU3, `$gpc.getstructuredrecord`).
    GpConnect,
}

/// Limits applied to every source.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// How long a view waits for any one source (default 3 s).
    pub deadline: Duration,
    /// The most a source may send for one view, over all pages (default 8 MiB).
    pub max_bytes_per_source: u64,
    /// `_count` asked for per page.
    pub page_size: u32,
    /// The most pages followed per search, against a source that pages forever.
    pub max_pages: u32,
    /// Deadline for one patient-index sync of one source.
    pub sync_timeout: Duration,
    /// The largest document opened through the gateway (default 20 MiB): larger ones are
    /// refused, and one that passes it while arriving is cut off.
    pub max_document_bytes: u64,
    /// How long opening a document may wait for its source to start sending it (default 10 s).
    pub document_deadline: Duration,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(3),
            max_bytes_per_source: 8 * 1024 * 1024,
            page_size: 200,
            max_pages: 100,
            sync_timeout: Duration::from_secs(600),
            max_document_bytes: crate::document::DEFAULT_MAX_DOCUMENT_BYTES,
            document_deadline: Duration::from_secs(10),
        }
    }
}
