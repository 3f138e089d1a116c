//! GP Connect as a source: NHS GP Connect Access Record: Structured, the way English GP
//! practices share their record.
//!
//! One `POST [ssp]/[base]/Patient/$gpc.getstructuredrecord` per view, with the `Parameters`
//! naming the patient's NHS number and the clinical areas the grant covers, the Spine Secure
//! Proxy headers (`Ssp-TraceID`, `Ssp-From`, `Ssp-To`, `Ssp-InteractionID`) and the access
//! token GP Connect requires ([`crate::IdentitySigner::for_gp_connect`]), over the same mutual
//! TLS client as every other source. The STU3 answer is read into the R4 shapes the merge reads
//! ([`stu3`]); the provider's list warnings travel to the banner, and the errors the
//! specification defines become [`FailureReason`]s ([`failure_from`]).
//!
//! The patient index still learns who the practice holds from its registrations, read as FHIR
//! R4 `Patient`s from the same base URL ([`Source::patient_feed`]): GP Connect has no search
//! of a practice's whole list.

pub mod directory;
pub mod documents;
pub mod stu3;

pub use directory::Directory;

use crate::client::{Ask, Fetched, HttpSource, Location, Source, SourceConfig};
use crate::identity::{IdentitySigner, Requester};
use crate::merge::{Digest, Received};
use crate::FederationConfig;
use async_trait::async_trait;
use mcr_domain::{FailureReason, NhsNumber, SourceId};
use mcr_policy::Grant;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// `Ssp-InteractionID` of Access Record: Structured.
pub const INTERACTION_STRUCTURED: &str =
    "urn:nhs:names:services:gpconnect:fhir:operation:gpc.getstructuredrecord-1";

/// The code system of Spine error codes in an `OperationOutcome`.
pub const SPINE_ERROR_SYSTEM: &str =
    "https://fhir.nhs.uk/STU3/CodeSystem/Spine-ErrorOrWarningCode-1";

pub use crate::client::{DirectoryConfig, GpConnectConfig};

/// Where one request goes: the provider's service root and its ASID, and, when it is one
/// practice's endpoint, that practice's ODS code.
struct Target<'a> {
    address: &'a str,
    asid: &'a str,
    practice: Option<&'a str>,
}

/// A GP practice system answering GP Connect Access Record: Structured.
#[derive(Debug, Clone)]
pub struct GpConnectSource {
    gpc: GpConnectConfig,
    client: reqwest::Client,
    limits: FederationConfig,
    identity: Option<Arc<IdentitySigner>>,
    /// The same base URL asked the R4 way, for the index's registration feed only.
    registrations: HttpSource,
    directory: Option<Arc<directory::Directory>>,
    /// The practices' ids for patients, remembered between views (shared by clones).
    document_patients: Arc<documents::DocumentPatients>,
}

impl GpConnectSource {
    /// `config.gp_connect` must be set (checked when the settings are read); without it the
    /// source answers every view with a failure saying so.
    pub fn new(config: SourceConfig, client: reqwest::Client, limits: FederationConfig) -> Self {
        let gpc = config.gp_connect.clone().unwrap_or(GpConnectConfig {
            ssp_prefix: None,
            consumer_asid: String::new(),
            provider_asid: String::new(),
            directory: None,
        });
        let directory = gpc.directory.as_ref().map(|d| {
            Arc::new(directory::Directory::new(
                d.url.clone(),
                d.api_key.clone(),
                client.clone(),
                Duration::from_secs(d.ttl_secs),
            ))
        });
        Self {
            directory,
            document_patients: Arc::default(),
            gpc,
            registrations: HttpSource::new(config, client.clone(), limits.clone()),
            client,
            limits,
            identity: None,
        }
    }

    /// Sign each request's access token with `signer` (required to ask for a record).
    pub fn with_identity(mut self, signer: Arc<IdentitySigner>) -> Self {
        self.registrations = self.registrations.with_identity(Arc::clone(&signer));
        self.identity = Some(signer);
        self
    }

    /// The provider's service root, the `aud` of its tokens.
    fn audience(&self) -> &str {
        self.registrations
            .config()
            .base_url
            .as_str()
            .trim_end_matches('/')
    }

    /// The endpoint directory, when endpoints are looked up.
    pub fn directory(&self) -> Option<&directory::Directory> {
        self.directory.as_deref()
    }

    /// Where the operation is posted: through the proxy when there is one.
    pub fn operation_url(&self) -> Result<Url, FailureReason> {
        self.operation_url_at(self.audience())
    }

    fn operation_url_at(&self, address: &str) -> Result<Url, FailureReason> {
        let target = format!(
            "{}/Patient/$gpc.getstructuredrecord",
            address.trim_end_matches('/')
        );
        let url = match &self.gpc.ssp_prefix {
            Some(ssp) => format!("{}/{target}", ssp.as_str().trim_end_matches('/')),
            None => target,
        };
        Url::parse(&url).map_err(|_| FailureReason::Malformed {
            detail: "the configured GP Connect URL cannot take the operation".into(),
        })
    }

    /// Ask for `nhs`'s structured record covering `types` (R4 resource types, as the grant
    /// names them), as `token`'s user, and hand each item to `digest`.
    pub async fn structured_record(
        &self,
        nhs: &NhsNumber,
        types: &[&str],
        token: &str,
        digest: &Digest<'_>,
    ) -> Result<Fetched, FailureReason> {
        let target = Target {
            address: self.audience(),
            asid: &self.gpc.provider_asid,
            practice: None,
        };
        self.structured_record_at(&target, nhs, types, token, digest)
            .await
    }

    async fn structured_record_at(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        types: &[&str],
        token: &str,
        digest: &Digest<'_>,
    ) -> Result<Fetched, FailureReason> {
        if self.gpc.consumer_asid.is_empty() || target.asid.is_empty() {
            return Err(FailureReason::Unreachable {
                detail: "GP Connect source without [gp_connect] ASIDs".into(),
            });
        }
        // The documents (Access Document) are asked for beside the structured record.
        let wants_documents = types.contains(&"DocumentReference");
        let (structured, documents) = tokio::join!(
            self.structured_only(target, nhs, types, token, digest),
            async {
                if wants_documents {
                    Some(self.documents_for_view(target, nhs, token, digest).await)
                } else {
                    None
                }
            }
        );
        let (mut fetched, answering) = structured?;
        match documents {
            Some(Ok((mut docs, docs_ms))) => {
                // The practice's letters are the practice's, as its structured record is.
                if let Some((code, name)) = &answering {
                    self.attribute(&mut docs, code, name, target);
                }
                fetched.resources.extend(docs);
                // The practice answered on two paths at once: its time is the longer.
                fetched.source_ms = match (fetched.source_ms, docs_ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            Some(Err(reason)) => fetched.warnings.push(format!(
                "Its documents could not be listed ({}): any it holds are missing from this view.",
                reason.describe()
            )),
            None => {}
        }
        Ok(fetched)
    }

    /// Items at the practice `code` answering at `target`: each of their sources names the
    /// practice, at the practice's endpoint.
    fn attribute(
        &self,
        resources: &mut [crate::Digested],
        code: &mcr_domain::OdsCode,
        name: &str,
        target: &Target<'_>,
    ) {
        let base = self
            .registrations
            .config()
            .base_url
            .as_str()
            .trim_end_matches('/');
        for d in resources {
            if let crate::Digested::Item(item) = d {
                for s in &mut item.1.sources {
                    s.org_code = code.clone();
                    name.clone_into(&mut s.org_name);
                    if let Some(rest) = s.full_url.strip_prefix(base) {
                        s.full_url = format!("{}{rest}", target.address);
                    }
                }
            }
        }
    }

    /// Access Record: Structured alone, and the practice that answered (when it is the one
    /// asked), whose items they are.
    async fn structured_only(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        types: &[&str],
        token: &str,
        digest: &Digest<'_>,
    ) -> Result<(Fetched, Option<(mcr_domain::OdsCode, String)>), FailureReason> {
        let body = parameters(nhs, types);
        let trace = uuid::Uuid::new_v4().to_string();
        let response = self
            .client
            .post(self.operation_url_at(target.address)?)
            .header(reqwest::header::ACCEPT, FHIR_JSON)
            .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
            .header("Ssp-TraceID", &trace)
            .header("Ssp-From", &self.gpc.consumer_asid)
            .header("Ssp-To", target.asid)
            .header("Ssp-InteractionID", INTERACTION_STRUCTURED)
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| crate::transport::transport_failure(&e))?;
        let status = response.status().as_u16();
        let source_ms = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::client::server_timing_app_ms);
        let bytes = read_capped(response, self.limits.max_bytes_per_source).await?;
        if !(200..300).contains(&status) {
            return Err(failure_from(status, &bytes));
        }
        let bundle: Value =
            serde_json::from_slice(&bytes).map_err(|e| FailureReason::Malformed {
                detail: format!(
                    "the structured record is not JSON (line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let read = stu3::read_bundle(&bundle)?;
        drop(bundle);
        tracing::debug!(
            source = %self.registrations.config().id,
            items = read.resources.len(),
            folded = read.folded,
            not_shown = read.not_shown,
            warnings = read.warnings.len(),
            "structured record read"
        );
        let mut resources = Vec::with_capacity(read.resources.len());
        for r in read.resources {
            let text = r.to_string();
            let raw: Box<serde_json::value::RawValue> =
                serde_json::value::RawValue::from_string(text).map_err(|_| {
                    FailureReason::Malformed {
                        detail: "a converted resource could not be written".into(),
                    }
                })?;
            let doc = mcr_fhir::Doc::parse(raw.get()).map_err(|_| FailureReason::Malformed {
                detail: "a converted resource could not be read".into(),
            })?;
            resources.push(digest(Received {
                doc: &doc,
                raw: &raw,
            }));
        }
        // Asked at one practice's endpoint, and the record says it is that practice's: its
        // items are the practice's, at that endpoint.
        let answering = match (&read.practice, target.practice) {
            (Some((code, name)), Some(asked)) if code == asked => mcr_domain::OdsCode::parse(code)
                .ok()
                .map(|c| (c, name.clone())),
            _ => None,
        };
        if let Some((code, name)) = &answering {
            self.attribute(&mut resources, code, name, target);
        }
        Ok((
            Fetched {
                resources,
                source_ms,
                warnings: read.warnings,
                cut_short: None,
            },
            answering,
        ))
    }
}

const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

/// The body, at most `cap` bytes of it.
async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Vec<u8>, FailureReason> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(FailureReason::TooLarge { limit_bytes: cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| crate::transport::transport_failure(&e))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(FailureReason::TooLarge { limit_bytes: cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `Parameters` of `$gpc.getstructuredrecord` for the clinical areas `types` cover
/// (spec: "Retrieve a patient's structured record", payload request body). Resolved
/// allergies, prescription issues, immunisations not given and every consultation are asked
/// for: the record shows what the practice holds, not a summary of it.
pub fn parameters(nhs: &NhsNumber, types: &[&str]) -> Value {
    let has = |t: &[&str]| types.iter().any(|x| t.contains(x));
    let mut p = vec![json!({
        "name": "patientNHSNumber",
        "valueIdentifier": {"system": NhsNumber::SYSTEM, "value": nhs.as_str()},
    })];
    if has(&["AllergyIntolerance"]) {
        p.push(json!({"name": "includeAllergies", "part": [
            {"name": "includeResolvedAllergies", "valueBoolean": true}]}));
    }
    if has(&["MedicationStatement", "MedicationRequest"]) {
        p.push(json!({"name": "includeMedication", "part": [
            {"name": "includePrescriptionIssues", "valueBoolean": true}]}));
    }
    if has(&["Condition"]) {
        p.push(json!({"name": "includeProblems"}));
    }
    if has(&["Encounter"]) {
        p.push(json!({"name": "includeConsultations"}));
    }
    if has(&["Immunization"]) {
        p.push(json!({"name": "includeImmunisations", "part": [
            {"name": "includeNotGiven", "valueBoolean": true},
            {"name": "includeDissentConsent", "valueBoolean": false}]}));
    }
    if has(&["Observation", "DiagnosticReport"]) {
        p.push(json!({"name": "includeInvestigations"}));
        p.push(json!({"name": "includeUncategorisedData"}));
    }
    if has(&["ServiceRequest"]) {
        p.push(json!({"name": "includeReferrals"}));
    }
    json!({"resourceType": "Parameters", "parameter": p})
}

/// What a GP Connect error answer means for the view (spec: "Error handling guidance", and
/// the operation's own error table). The Spine error code decides; the HTTP status only when
/// there is none (a proxy's refusal, a body that is not an `OperationOutcome`).
pub fn failure_from(status: u16, body: &[u8]) -> FailureReason {
    let outcome: Option<Value> = serde_json::from_slice(body).ok();
    let issue = outcome
        .as_ref()
        .filter(|o| o.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"))
        .and_then(|o| o.pointer("/issue/0"));
    let code = issue
        .and_then(|i| i.pointer("/details/coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(SPINE_ERROR_SYSTEM))
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str);
    let diagnostics = issue
        .and_then(|i| i.get("diagnostics"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    // Only codes from the specification's value set are repeated in the banner.
    let known = |c: &str| FailureReason::InvalidRequest { code: c.to_owned() };
    match code {
        Some("NO_PATIENT_CONSENT") => FailureReason::PatientDissent,
        // The provider says why in its diagnostics only; a non-regular patient is the
        // specification's "registered practice is somewhere else".
        Some("PATIENT_NOT_FOUND")
            if diagnostics.contains("not registered") || diagnostics.contains("non-regular") =>
        {
            FailureReason::NotRegistered
        }
        Some("PATIENT_NOT_FOUND" | "NO_RECORD_FOUND") => FailureReason::PatientNotFound,
        Some("INVALID_NHS_NUMBER") => FailureReason::InvalidNhsNumber,
        Some(
            c @ ("INVALID_RESOURCE"
            | "INVALID_PARAMETER"
            | "BAD_REQUEST"
            | "INVALID_IDENTIFIER_SYSTEM"
            | "INVALID_IDENTIFIER_VALUE"
            | "REFERENCE_NOT_FOUND"
            | "CONFLICTING_VALUES"
            | "NOT_IMPLEMENTED"),
        ) => known(c),
        Some(
            c @ ("ACCESS DENIED"
            | "NO_RELATIONSHIP"
            | "NO_ORGANISATION_CONSENT"
            | "ORGANISATION_NOT_FOUND"),
        ) => FailureReason::AccessDenied { code: c.to_owned() },
        Some(c @ "INTERNAL_SERVER_ERROR") => FailureReason::ProviderError { code: c.to_owned() },
        _ => match status {
            401 | 403 => FailureReason::AccessDenied {
                code: format!("HTTP {status}"),
            },
            _ => FailureReason::HttpStatus { status },
        },
    }
}

#[async_trait]
impl Source for GpConnectSource {
    fn id(&self) -> &SourceId {
        self.registrations.id()
    }

    fn config(&self) -> &SourceConfig {
        self.registrations.config()
    }

    /// Without a directory only: with one, the audience (the practice's endpoint) is known
    /// only once the directory has named it.
    fn sign_identity(&self, who: &Requester<'_>) -> Option<Result<String, FailureReason>> {
        if self.directory.is_some() {
            return None;
        }
        let signer = self.identity.as_ref()?;
        Some(signer.for_gp_connect(who, self.audience()))
    }

    /// With a directory: the registered practice's endpoint, looked up (and cached), asked
    /// with a token naming it as the audience.
    async fn fetch_at(
        &self,
        grant: &Grant,
        at: &Location,
        types: &[&str],
        digest: &Digest<'_>,
        ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        let Some(directory) = &self.directory else {
            return self
                .fetch_patient(grant, &at.local_id, types, digest, ask)
                .await;
        };
        let practice =
            at.registered_practice
                .as_deref()
                .ok_or_else(|| FailureReason::Unreachable {
                    detail: "no registered GP practice is known for this patient".into(),
                })?;
        let endpoint = directory.endpoint(practice, INTERACTION_STRUCTURED).await?;
        let signer = self
            .identity
            .as_ref()
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "GP Connect needs the user's access token: no identity key".into(),
            })?;
        let address = endpoint.address.as_str().trim_end_matches('/');
        let token = signer.for_gp_connect(&Requester::of(grant), address)?;
        let target = Target {
            address,
            asid: &endpoint.asid,
            practice: Some(practice),
        };
        // One request: the record arrives whole by the deadline, or not at all.
        let asked = self.structured_record_at(&target, grant.patient(), types, &token, digest);
        tokio::time::timeout_at(ask.until, asked)
            .await
            .unwrap_or_else(|_| Err(ask.timeout()))
    }

    async fn open_document(
        &self,
        grant: &Grant,
        at: &Location,
        id: &str,
        check: &Digest<'_>,
        cap: u64,
    ) -> Result<crate::document::OpenedDocument, crate::document::DocumentRefusal> {
        use crate::document::DocumentRefusal;
        let signer =
            self.identity
                .as_ref()
                .ok_or(DocumentRefusal::Source(FailureReason::Unreachable {
                    detail: "GP Connect needs the user's access token: no identity key".into(),
                }))?;
        let who = Requester::of(grant);
        match &self.directory {
            None => {
                let token = signer
                    .for_gp_connect(&who, self.audience())
                    .map_err(DocumentRefusal::Source)?;
                let target = Target {
                    address: self.audience(),
                    asid: &self.gpc.provider_asid,
                    practice: None,
                };
                self.open_document_at(&target, grant.patient(), id, &token, check, cap)
                    .await
            }
            Some(directory) => {
                let practice = at
                    .registered_practice
                    .as_deref()
                    .ok_or(DocumentRefusal::Source(FailureReason::Unreachable {
                        detail: "no registered GP practice is known for this patient".into(),
                    }))?;
                let endpoint = directory
                    .endpoint(practice, INTERACTION_STRUCTURED)
                    .await
                    .map_err(DocumentRefusal::Source)?;
                let address = endpoint.address.as_str().trim_end_matches('/');
                let token = signer
                    .for_gp_connect(&who, address)
                    .map_err(DocumentRefusal::Source)?;
                let target = Target {
                    address,
                    asid: &endpoint.asid,
                    practice: Some(practice),
                };
                self.open_document_at(&target, grant.patient(), id, &token, check, cap)
                    .await
            }
        }
    }

    async fn fetch_patient(
        &self,
        grant: &Grant,
        _local_id: &str,
        types: &[&str],
        digest: &Digest<'_>,
        ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        let token = match (ask.signed.clone(), &self.identity) {
            (Some(t), _) => t,
            (None, Some(signer)) => {
                signer.for_gp_connect(&Requester::of(grant), self.audience())?
            }
            (None, None) => {
                return Err(FailureReason::Unreachable {
                    detail: "GP Connect needs the user's access token: no identity key".into(),
                })
            }
        };
        let asked = self.structured_record(grant.patient(), types, &token, digest);
        tokio::time::timeout_at(ask.until, asked)
            .await
            .unwrap_or_else(|_| Err(ask.timeout()))
    }

    async fn patient_feed(
        &self,
        since: Option<&str>,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        self.registrations.patient_feed(since, timeout, pages).await
    }

    async fn care_event_feed(
        &self,
        resource_type: &str,
        from: chrono::NaiveDate,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        self.registrations
            .care_event_feed(resource_type, from, timeout, pages)
            .await
    }
}

#[cfg(test)]
mod tests;
