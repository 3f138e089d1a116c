//! GP Connect Access Document (1.x): the practice's documents, listed with a record view and
//! each fetched only when a clinician opens it.
//!
//! At the practice's documents endpoint (`{endpoint}/documents`, as the specification's
//! examples place it), through the Spine Secure Proxy like every GP Connect request:
//! find the patient by NHS number (`GET /Patient?identifier=…`,
//! [`INTERACTION_FIND_PATIENT`]), search their documents
//! (`GET /Patient/{id}/DocumentReference?_include=…`, [`INTERACTION_SEARCH_DOCUMENTS`]), and
//! read one (`GET /Binary/{id}`, [`INTERACTION_READ_BINARY`]: a FHIR `Binary` with the bytes
//! in base64). The STU3 `DocumentReference`s are read into the R4 shape the merge reads
//! ([`r4_document`]); a document is opened only if the practice's own current list still
//! names it and the view's checks pass, and only from the address its reference gives, on
//! the practice's server.

use super::{failure_from, GpConnectSource, Target, FHIR_JSON};
use crate::document::{DocumentRefusal, OpenedDocument};
use crate::merge::Digested;
use crate::merge::{Digest, Received};
use mcr_domain::{FailureReason, NhsNumber};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// `Ssp-InteractionID` of Access Document's Find a patient.
pub const INTERACTION_FIND_PATIENT: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:patient-1";
/// `Ssp-InteractionID` of Search for a patient's documents.
pub const INTERACTION_SEARCH_DOCUMENTS: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:documentreference-1";
/// `Ssp-InteractionID` of Retrieve a document.
pub const INTERACTION_READ_BINARY: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:read:binary-1";

/// The `_include`s a consumer must send with a document search (spec: "Search for a
/// patient's documents", consumer MUST send).
pub const SEARCH_INCLUDES: [(&str, &str); 5] = [
    ("_include", "DocumentReference:subject:Patient"),
    ("_include", "DocumentReference:custodian:Organization"),
    ("_include", "DocumentReference:author:Organization"),
    ("_include", "DocumentReference:author:Practitioner"),
    ("_revinclude:recurse", "PractitionerRole:practitioner"),
];

/// A search answer's most: its `DocumentReference`s, not their bytes.
const MAX_SEARCH_BYTES: u64 = 4 * 1024 * 1024;

/// A document search's answer: the practice's id for the patient, their documents (STU3, as
/// sent), and the provider's own time for the requests it took.
pub(super) struct Searched {
    patient: String,
    docs: Vec<Value>,
    source_ms: Option<f64>,
}

/// How long a practice's id for a patient is remembered (each use is confirmed by the
/// search's answer all the same).
const REMEMBER_FOR: Duration = Duration::from_secs(15 * 60);
/// At most this many ids are remembered; past it the expired go, and if none has, all.
const REMEMBER_AT_MOST: usize = 100_000;

/// The practices' ids for patients at their documents endpoints (endpoint and NHS number to
/// id), in memory only, so a view can search a patient's documents in one request instead of
/// two (find, then search). Never trusted alone: see [`GpConnectSource::search_documents`].
#[derive(Debug, Default)]
pub(super) struct DocumentPatients {
    ids: Mutex<HashMap<(String, NhsNumber), (String, Instant)>>,
}

impl DocumentPatients {
    fn get(&self, address: &str, nhs: &NhsNumber) -> Option<String> {
        let ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.get(&(address.to_owned(), nhs.clone()))
            .filter(|(_, at)| at.elapsed() < REMEMBER_FOR)
            .map(|(id, _)| id.clone())
    }

    fn remember(&self, address: &str, nhs: &NhsNumber, patient: &str) {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.len() >= REMEMBER_AT_MOST {
            ids.retain(|_, (_, at)| at.elapsed() < REMEMBER_FOR);
            if ids.len() >= REMEMBER_AT_MOST {
                ids.clear();
            }
        }
        ids.insert(
            (address.to_owned(), nhs.clone()),
            (patient.to_owned(), Instant::now()),
        );
    }

    fn forget(&self, address: &str, nhs: &NhsNumber) {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.remove(&(address.to_owned(), nhs.clone()));
    }
}

impl GpConnectSource {
    /// The Access Document service root of the endpoint at `address`.
    fn documents_root(address: &str) -> String {
        format!("{}/documents", address.trim_end_matches('/'))
    }

    /// `url` (the provider's own address) through the proxy, when there is one.
    fn through_proxy(&self, url: &Url) -> Result<Url, FailureReason> {
        match &self.gpc.ssp_prefix {
            Some(ssp) => Url::parse(&format!(
                "{}/{}",
                ssp.as_str().trim_end_matches('/'),
                url.as_str()
            ))
            .map_err(|_| FailureReason::Malformed {
                detail: "the proxied document URL is not a URL".into(),
            }),
            None => Ok(url.clone()),
        }
    }

    /// A `GET` with the Spine proxy headers for `interaction`.
    async fn gpc_get(
        &self,
        target: &Target<'_>,
        url: &Url,
        interaction: &str,
        token: &str,
    ) -> Result<reqwest::Response, FailureReason> {
        if self.gpc.consumer_asid.is_empty() || target.asid.is_empty() {
            return Err(FailureReason::Unreachable {
                detail: "GP Connect source without [gp_connect] ASIDs".into(),
            });
        }
        self.client
            .get(self.through_proxy(url)?)
            .header(reqwest::header::ACCEPT, FHIR_JSON)
            .header("Ssp-TraceID", uuid::Uuid::new_v4().to_string())
            .header("Ssp-From", &self.gpc.consumer_asid)
            .header("Ssp-To", target.asid)
            .header("Ssp-InteractionID", interaction)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| crate::transport::transport_failure(&e))
    }

    /// The answer to a `GET`, read as JSON, with the provider's own time for it
    /// (`Server-Timing: app;dur=`) when it says.
    async fn gpc_json(
        &self,
        target: &Target<'_>,
        url: &Url,
        interaction: &str,
        token: &str,
    ) -> Result<(Value, Option<f64>), FailureReason> {
        let response = self.gpc_get(target, url, interaction, token).await?;
        let status = response.status().as_u16();
        let source_ms = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::client::server_timing_app_ms);
        let bytes = super::read_capped(response, MAX_SEARCH_BYTES).await?;
        if !(200..300).contains(&status) {
            return Err(failure_from(status, &bytes));
        }
        let json = serde_json::from_slice(&bytes).map_err(|e| FailureReason::Malformed {
            detail: format!(
                "a GP Connect answer is not JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        })?;
        Ok((json, source_ms))
    }

    /// The practice's id for `nhs` at its documents endpoint; `None` when it holds no such
    /// registered patient (not an error, the specification says).
    pub(super) async fn find_document_patient(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        token: &str,
    ) -> Result<(Option<String>, Option<f64>), FailureReason> {
        let mut url = parse(&format!("{}/Patient", Self::documents_root(target.address)))?;
        url.query_pairs_mut().append_pair(
            "identifier",
            &format!("{}|{}", NhsNumber::SYSTEM, nhs.as_str()),
        );
        let (bundle, ms) = self
            .gpc_json(target, &url, INTERACTION_FIND_PATIENT, token)
            .await?;
        let found = entries(&bundle)
            .filter(|r| r["resourceType"] == "Patient")
            .find(|r| names_nhs(r, nhs))
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned);
        Ok((found, ms))
    }

    /// The documents of the practice's patient `patient`, as the practice sent them (STU3),
    /// and whether the answer itself says `patient` is `nhs`: its `_include`d Patient has that
    /// id and names that NHS number.
    async fn documents_of(
        &self,
        target: &Target<'_>,
        patient: &str,
        nhs: &NhsNumber,
        token: &str,
    ) -> Result<(Vec<Value>, bool, Option<f64>), FailureReason> {
        let mut url = parse(&format!("{}/Patient", Self::documents_root(target.address)))?;
        url.path_segments_mut()
            .map_err(|()| FailureReason::Malformed {
                detail: "the documents URL cannot take a path".into(),
            })?
            .push(patient)
            .push("DocumentReference");
        url.query_pairs_mut().extend_pairs(SEARCH_INCLUDES);
        let (bundle, ms) = self
            .gpc_json(target, &url, INTERACTION_SEARCH_DOCUMENTS, token)
            .await?;
        if bundle["resourceType"] != "Bundle" {
            return Err(FailureReason::Malformed {
                detail: "a document search was not answered with a Bundle".into(),
            });
        }
        let confirmed = entries(&bundle)
            .any(|r| r["resourceType"] == "Patient" && r["id"] == patient && names_nhs(r, nhs));
        let docs = entries(&bundle)
            .filter(|r| r["resourceType"] == "DocumentReference")
            .cloned()
            .collect();
        Ok((docs, confirmed, ms))
    }

    /// The patient's current documents at the practice, as the practice sent them (STU3),
    /// with the practice's id for the patient and the provider's own time on the way.
    ///
    /// A view asks once where it can: the practice's id for the patient, once found, is
    /// remembered for a while ([`DocumentPatients`]) and the search asked straight away. A
    /// remembered id is trusted only when the search's answer confirms it (its `_include`d
    /// Patient is that id and names this NHS number); otherwise, or when the search is
    /// refused, it is forgotten and the patient found again, so a stale id can never list
    /// another patient's letters.
    pub(super) async fn search_documents(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        token: &str,
    ) -> Result<Option<Searched>, FailureReason> {
        let mut waited = 0.0;
        let mut said = false;
        let mut add = |ms: Option<f64>| {
            if let Some(ms) = ms {
                waited += ms;
                said = true;
            }
        };
        let mut known = self.document_patients.get(target.address, nhs);
        if let Some(patient) = known.take() {
            match self.documents_of(target, &patient, nhs, token).await {
                Ok((docs, true, ms)) => {
                    add(ms);
                    return Ok(Some(Searched {
                        patient,
                        docs,
                        source_ms: said.then_some(waited),
                    }));
                }
                Ok((docs, false, ms)) => {
                    add(ms);
                    // Unconfirmed: find the patient again. The same id and no letters to
                    // confirm it by is a confirmed empty list.
                    self.document_patients.forget(target.address, nhs);
                    if docs.is_empty() {
                        known = Some(patient);
                    }
                }
                Err(
                    reason @ (FailureReason::Timeout { .. } | FailureReason::Unreachable { .. }),
                ) => {
                    self.document_patients.forget(target.address, nhs);
                    return Err(reason);
                }
                Err(_) => self.document_patients.forget(target.address, nhs),
            }
        }
        let (found, ms) = self.find_document_patient(target, nhs, token).await?;
        add(ms);
        let Some(patient) = found else {
            return Ok(None);
        };
        if known.as_deref() == Some(patient.as_str()) {
            self.document_patients
                .remember(target.address, nhs, &patient);
            return Ok(Some(Searched {
                patient,
                docs: Vec::new(),
                source_ms: said.then_some(waited),
            }));
        }
        let (docs, confirmed, ms) = self.documents_of(target, &patient, nhs, token).await?;
        add(ms);
        // Found by NHS number just now: the find is the practice's word. Remember the id only
        // when the search agreed, so the next view's shortcut starts from a confirmed id.
        if confirmed {
            self.document_patients
                .remember(target.address, nhs, &patient);
        }
        Ok(Some(Searched {
            patient,
            docs,
            source_ms: said.then_some(waited),
        }))
    }

    /// The patient's documents for a record view, each digested as an R4 `DocumentReference`.
    pub(super) async fn documents_for_view(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        token: &str,
        digest: &Digest<'_>,
    ) -> Result<(Vec<Digested>, Option<f64>), FailureReason> {
        let Some(found) = self.search_documents(target, nhs, token).await? else {
            return Ok((Vec::new(), None));
        };
        let docs = found
            .docs
            .iter()
            .map(|d| digest_value(&r4_document(d, &found.patient, nhs), digest))
            .collect::<Result<_, _>>()?;
        Ok((docs, found.source_ms))
    }

    /// [`GpConnectSource::open_document_at`] at the configured provider (no directory), as
    /// `token`'s user.
    pub async fn open_document_as(
        &self,
        nhs: &NhsNumber,
        id: &str,
        token: &str,
        check: &Digest<'_>,
        cap: u64,
    ) -> Result<OpenedDocument, DocumentRefusal> {
        let target = Target {
            address: self.audience(),
            asid: &self.gpc.provider_asid,
            practice: None,
        };
        self.open_document_at(&target, nhs, id, token, check, cap)
            .await
    }

    /// Open document `id` for `nhs`: the practice's current list must still name it, it must
    /// pass `check`, and its bytes come from the address it names, on the practice's server.
    pub(super) async fn open_document_at(
        &self,
        target: &Target<'_>,
        nhs: &NhsNumber,
        id: &str,
        token: &str,
        check: &Digest<'_>,
        cap: u64,
    ) -> Result<OpenedDocument, DocumentRefusal> {
        let Searched { patient, docs, .. } = self
            .search_documents(target, nhs, token)
            .await
            .map_err(DocumentRefusal::Source)?
            .ok_or(DocumentRefusal::NotFound)?;
        let doc = docs
            .iter()
            .find(|d| d["id"].as_str() == Some(id))
            .ok_or(DocumentRefusal::NotFound)?;
        let r4 = r4_document(doc, &patient, nhs);
        let raw = serde_json::value::RawValue::from_string(r4.to_string()).map_err(|_| {
            DocumentRefusal::Source(FailureReason::Malformed {
                detail: "a document reference could not be read".into(),
            })
        })?;
        let att = crate::document::check_reference(&raw, id, check)?;
        let endpoint = parse(target.address).map_err(DocumentRefusal::Source)?;
        let url = endpoint
            .join(&att.url)
            .map_err(|_| DocumentRefusal::Elsewhere)?;
        if url.origin() != endpoint.origin() {
            return Err(DocumentRefusal::Elsewhere);
        }
        let response = self
            .gpc_get(target, &url, INTERACTION_READ_BINARY, token)
            .await
            .map_err(DocumentRefusal::Source)?;
        crate::document::read_binary(response, &att.content_type, att.title, cap, failure_from)
            .await
    }
}

fn parse(s: &str) -> Result<Url, FailureReason> {
    Url::parse(s).map_err(|_| FailureReason::Malformed {
        detail: "the configured GP Connect URL is not a URL".into(),
    })
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
}

fn names_nhs(patient: &Value, nhs: &NhsNumber) -> bool {
    patient["identifier"].as_array().is_some_and(|ids| {
        ids.iter()
            .any(|i| i["system"] == NhsNumber::SYSTEM && i["value"] == nhs.as_str())
    })
}

fn digest_value(r: &Value, digest: &Digest<'_>) -> Result<Digested, FailureReason> {
    let raw = serde_json::value::RawValue::from_string(r.to_string()).map_err(|_| {
        FailureReason::Malformed {
            detail: "a converted document reference could not be written".into(),
        }
    })?;
    let doc = mcr_fhir::Doc::parse(raw.get()).map_err(|_| FailureReason::Malformed {
        detail: "a converted document reference could not be read".into(),
    })?;
    Ok(digest(Received {
        doc: &doc,
        raw: &raw,
    }))
}

/// A GP Connect (STU3, CareConnect-GPC-DocumentReference-1) `DocumentReference` in the R4
/// shape: `created` (or `indexed`) as `date`, `class` as `category`; its subject, when it is
/// the patient the practice found for `nhs` (`patient`), named by NHS number (the practice's
/// ids mean nothing to the region). Anything else is left as sent, to be tied or not.
pub fn r4_document(d: &Value, patient: &str, nhs: &NhsNumber) -> Value {
    let mut r = d.clone();
    let Some(o) = r.as_object_mut() else {
        return r;
    };
    let date = o
        .remove("created")
        .or_else(|| o.get("indexed").cloned())
        .filter(Value::is_string);
    o.remove("indexed");
    if let Some(date) = date {
        o.insert("date".into(), date);
    }
    if let Some(class) = o.remove("class") {
        o.insert("category".into(), json!([class]));
    }
    if let Some(meta) = o.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("profile");
    }
    let reference = o
        .get("subject")
        .and_then(|s| s.get("reference"))
        .and_then(Value::as_str)
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned());
    if reference.as_deref() == Some(patient) {
        o.insert(
            "subject".into(),
            json!({"identifier": {"system": NhsNumber::SYSTEM, "value": nhs.as_str()}}),
        );
    }
    r
}
