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
    pub gp_connect: Option<GpConnectConfig>,
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
    /// Whether a `relative` source is asked by NHS number (default `declared`): see
    /// [`IdentifierSearch`].
    #[serde(default)]
    pub identifier_search: IdentifierSearch,
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
    /// by its own base URL and by the patient's addresses at the region's other sources
    /// (`subject={base}/Patient/{id},…`, in the same batch), and by NHS number as its
    /// [`IdentifierSearch`] says; what it still cannot be asked for (a contained `Patient`, an
    /// address outside the region's sources, and an NHS number where it is not asked by one)
    /// is said in the view, one line for the source.
    #[default]
    Relative,
    /// It finds every item about the patient whatever form names them (it resolves
    /// references when it stores them, as the simulated sources do): one search per type,
    /// and nothing to say.
    EveryForm,
}

/// Whether a `relative` source is asked for the items that name the patient only by NHS
/// number (a logical reference, `subject.identifier`), with R4's `:identifier` modifier. Its
/// CapabilityStatement is the default word; configuration overrides it both ways, for a
/// server that answers the modifier without declaring it (Medplum's server does, on every
/// reference parameter) or declares it and answers wrongly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentifierSearch {
    /// Asked `patient:identifier=…` for the types whose statement declares the modifier on
    /// `patient`; for the rest the form is named as not searchable.
    #[default]
    Declared,
    /// Asked for every type, whatever the statement says: `subject:identifier=…` where the
    /// type has `subject` (a server may take `patient` to mean a reference it can resolve to a
    /// `Patient`, which an identifier alone is not), else `patient:identifier=…`. Set it only
    /// for a server known to answer the modifier: one that ignores it answers an empty search,
    /// and the view would then say nothing of the items it holds in that form.
    Always,
    /// Never asked; the form is named as not searchable.
    Never,
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

/// `[sources.gp_connect]`: how a `gp-connect` source is reached.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpConnectConfig {
    /// The Spine Secure Proxy: requests go to `{ssp_prefix}/{base_url}/Patient/…` (the
    /// provider's whole URL after the proxy's, as the specification's absolute request shows).
    /// Absent: straight to the provider.
    #[serde(default)]
    pub ssp_prefix: Option<Url>,
    /// This gateway's ASID (`Ssp-From`).
    pub consumer_asid: String,
    /// The provider system's ASID (`Ssp-To`), when `base_url` is the one provider asked (no
    /// directory).
    #[serde(default)]
    pub provider_asid: String,
    /// Find each patient's registered practice's endpoint and ASID in a directory shaped like
    /// the Spine Directory Service FHIR API, instead of asking `base_url` for everyone.
    #[serde(default)]
    pub directory: Option<DirectoryConfig>,
}

/// `[sources.gp_connect.directory]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The directory's FHIR base URL.
    pub url: Url,
    /// Sent as the `apikey` header.
    #[serde(default)]
    pub api_key: String,
    /// How long an endpoint found is used before it is looked up again (default an hour).
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

fn default_ttl_secs() -> u64 {
    3600
}
