//! [`HttpSource`]: a FHIR R4 server over HTTP. Its requests (with the identity token as
//! `Authorization: Bearer`), the answer's body read within the budget, the source's own time
//! from `Server-Timing`, and transport errors as a [`FailureReason`]; what a view, a document
//! and a feed ask of it.

use crate::transport::transport_failure;
use async_trait::async_trait;
use futures::future::join_all;
use mcr_domain::{FailureReason, SourceId};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

use super::budget::Budget;
use super::page::{not_json, patient_from, Pages, Seen};
use super::{
    Ask, Digest, FederationConfig, Fetched, Location, OtherForm, Received, Source, SourceConfig,
};
use crate::document::{DocumentRefusal, OpenedDocument};
use crate::identity::{IdentitySigner, Requester};
use crate::merge::Digested;
use mcr_policy::Grant;

/// A FHIR R4 server over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSource {
    pub(super) config: SourceConfig,
    pub(super) client: reqwest::Client,
    pub(super) limits: FederationConfig,
    pub(super) identity: Option<Arc<IdentitySigner>>,
}

impl HttpSource {
    /// `client` should be shared between sources (connection pools are per client).
    pub fn new(config: SourceConfig, client: reqwest::Client, limits: FederationConfig) -> Self {
        Self {
            config,
            client,
            limits,
            identity: None,
        }
    }

    /// Send the end user's identity, signed by `signer`, with every request
    /// (`Authorization: Bearer`).
    pub fn with_identity(mut self, signer: Arc<IdentitySigner>) -> Self {
        self.identity = Some(signer);
        self
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, FailureReason> {
        let base = self.config.base_url.as_str().trim_end_matches('/');
        let mut url =
            Url::parse(&format!("{base}/{path}")).map_err(|_| FailureReason::Malformed {
                detail: "the configured base URL cannot take a path".into(),
            })?;
        if !query.is_empty() {
            // Touched only when there is a query: an empty one would leave a bare `?`.
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// What a view asks this source for `resource_type` about `local_id`: the `Patient` read,
    /// or a search by patient with `count` per page.
    pub(super) fn ask_url(
        &self,
        resource_type: &str,
        local_id: &str,
        count: &str,
    ) -> Result<Url, FailureReason> {
        if resource_type != "Patient" {
            return self.url(resource_type, &[("patient", local_id), ("_count", count)]);
        }
        let mut url = self.url("Patient", &[])?;
        url.path_segments_mut()
            .map_err(|()| FailureReason::Malformed {
                detail: "the configured base URL cannot take a path".into(),
            })?
            .push(local_id);
        Ok(url)
    }

    /// Every request of one view, as (resource type, URL): the `Patient` read, a search by
    /// patient per type, and the searches `ask` adds for other forms of patient reference
    /// ([`OtherForm`]) of the types asked for.
    pub(super) fn view_asks<'a>(
        &self,
        local_id: &str,
        nhs: &str,
        types: &[&'a str],
        ask: &'a Ask,
        count: &str,
    ) -> Result<Vec<(&'a str, Url)>, FailureReason> {
        let mut asks = Vec::with_capacity(types.len() + ask.other_forms.len());
        for t in types {
            asks.push((*t, self.ask_url(t, local_id, count)?));
        }
        for form in &ask.other_forms {
            let t = form.resource_type();
            if types.contains(&t) {
                let url = self.other_form_url(form, local_id, nhs, &ask.elsewhere, count)?;
                asks.push((t, url));
            }
        }
        Ok(asks)
    }

    /// The search for items naming the patient in `form`, `count` per page; `elsewhere`, the
    /// patient's addresses at the region's other servers, are asked beside this server's own.
    pub(super) fn other_form_url(
        &self,
        form: &OtherForm,
        local_id: &str,
        nhs: &str,
        elsewhere: &[String],
        count: &str,
    ) -> Result<Url, FailureReason> {
        match form {
            OtherForm::Absolute {
                resource_type,
                param,
            } => {
                // The patient's address here, as the server writes it in an absolute reference,
                // then elsewhere: alternatives, separated by commas (a comma inside one is
                // escaped, as R4's search syntax says).
                let patient = self.ask_url("Patient", local_id, count)?;
                let addresses: Vec<String> = std::iter::once(patient.as_str())
                    .chain(elsewhere.iter().map(String::as_str))
                    .map(|a| a.replace('\\', "\\\\").replace(',', "\\,"))
                    .collect();
                self.url(
                    resource_type,
                    &[(param, addresses.join(",").as_str()), ("_count", count)],
                )
            }
            OtherForm::Identifier {
                resource_type,
                param,
            } => {
                let token = format!("{}|{nhs}", mcr_domain::NhsNumber::SYSTEM);
                let key = format!("{param}:identifier");
                self.url(
                    resource_type,
                    &[(key.as_str(), token.as_str()), ("_count", count)],
                )
            }
        }
    }

    async fn read_patient(
        &self,
        local_id: &str,
        budget: &Budget,
        digest: &Digest<'_>,
    ) -> Result<(Vec<Digested>, Option<f64>), FailureReason> {
        let url = self.ask_url("Patient", local_id, "")?;
        let Some((body, ms)) = budget.page(self.get_body(url, budget)).await? else {
            return Ok((Vec::new(), None));
        };
        let raw: &RawValue = serde_json::from_slice(&body).map_err(|e| not_json(&e))?;
        Ok((vec![patient_from(raw, local_id, digest)?], ms))
    }

    /// The body, and the source's own time for it (`Server-Timing: app;dur=`), if given.
    pub(super) async fn get_body(
        &self,
        url: Url,
        budget: &Budget,
    ) -> Result<(Vec<u8>, Option<f64>), FailureReason> {
        self.body_of(self.client.get(url), budget).await
    }

    /// `request` sent with the identity token, and its answer's body within `budget`.
    pub(super) async fn body_of(
        &self,
        request: reqwest::RequestBuilder,
        budget: &Budget,
    ) -> Result<(Vec<u8>, Option<f64>), FailureReason> {
        read_body(request, budget).await
    }
}

/// `request` sent with the identity token, and its answer's body within `budget`.
pub(super) async fn read_body(
    request: reqwest::RequestBuilder,
    budget: &Budget,
) -> Result<(Vec<u8>, Option<f64>), FailureReason> {
    let mut request = request.header(reqwest::header::ACCEPT, mcr_fhir::FHIR_JSON);
    if let Some(token) = &budget.identity {
        request = request.bearer_auth(token);
    }
    let mut resp = request.send().await.map_err(|e| transport_failure(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FailureReason::HttpStatus {
            status: status.as_u16(),
        });
    }
    let source_ms = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(server_timing_app_ms);
    let declared = resp.content_length();
    if let Some(len) = declared {
        budget.take(len)?;
        budget.give_back(len);
    }
    // Sized once when the source says how long the answer is: growing it as chunks arrive
    // copied it over and over into fresh memory. Up to 1 MiB: a length is only a claim,
    // and the bytes must still arrive within the budget.
    let mut body = Vec::with_capacity(
        declared.map_or(0, |len| usize::try_from(len.min(PRESIZE_MAX)).unwrap_or(0)),
    );
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_failure(&e))? {
        budget.take(chunk.len() as u64)?;
        body.extend_from_slice(&chunk);
    }
    Ok((body, source_ms))
}

/// Whether `id` is a FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub(crate) fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The most an answer's buffer is sized for up front from its `Content-Length`.
const PRESIZE_MAX: u64 = 1 << 20;

/// The `dur` of the `app` metric in a `Server-Timing` header (`app;dur=12.3, db;dur=4`), in
/// milliseconds. Anything unreadable, negative or absurd is ignored: the header is untrusted.
pub(crate) fn server_timing_app_ms(header: &str) -> Option<f64> {
    header.split(',').find_map(|metric| {
        let mut parts = metric.split(';').map(str::trim);
        if parts.next() != Some("app") {
            return None;
        }
        parts
            .filter_map(|p| p.strip_prefix("dur="))
            .find_map(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && (0.0..1.0e7).contains(d))
    })
}

/// A source's time over two answers one after the other (pages of one search): their sum, or
/// the one it reported when it reported only one.
pub(super) fn add_ms(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// A source's time over two answers side by side (concurrent searches): the slower, or the one
/// it reported when it reported only one.
pub(super) fn max_ms(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[async_trait]
impl Source for HttpSource {
    fn id(&self) -> &SourceId {
        &self.config.id
    }

    fn config(&self) -> &SourceConfig {
        &self.config
    }

    fn sign_identity(&self, who: &Requester<'_>) -> Option<Result<String, FailureReason>> {
        let signer = self.identity.as_ref()?;
        Some(signer.for_requester(who, self.config.base_url.as_str()))
    }

    async fn capability_statement(
        &self,
        timeout: Duration,
    ) -> Option<Result<serde_json::Value, FailureReason>> {
        let read = async {
            let url = self.url("metadata", &[])?;
            let budget = Budget::new(crate::capabilities::MAX_STATEMENT_BYTES, None);
            let (body, _) = self.get_body(url, &budget).await?;
            serde_json::from_slice(&body).map_err(|e| not_json(&e))
        };
        Some(match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(FailureReason::Timeout {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        })
    }

    async fn fetch_patient(
        &self,
        grant: &Grant,
        local_id: &str,
        types: &[&str],
        digest: &Digest<'_>,
        ask: Ask,
    ) -> Result<Fetched, FailureReason> {
        let identity = match (&self.identity, ask.signed.clone()) {
            (Some(_), Some(token)) => Some(token),
            (Some(signer), None) => Some(signer.for_user(grant, self.config.base_url.as_str())?),
            (None, _) => None,
        };
        let budget = Arc::new(Budget::for_view(
            self.limits.max_bytes_per_source,
            identity,
            &ask,
        ));
        let count = self.limits.page_size.to_string();
        let asks = self.view_asks(local_id, grant.patient().as_str(), types, &ask, &count)?;
        // Two searches of one type (by `Patient/{id}` and by the base URL, say) may both find
        // an item, from a server that finds either form by either search: it is kept once. An
        // item without a type or id cannot be known again, so it is never taken for another.
        let seen = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
        let once = |r: Received<'_>| {
            let (Some(resource_type), Some(id)) =
                (mcr_fhir::resource_type(r.doc), mcr_fhir::resource_id(r.doc))
            else {
                return digest(r);
            };
            let key = format!("{resource_type}/{id}");
            let first = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key);
            if first {
                digest(r)
            } else {
                Digested::Ignored
            }
        };
        let digest: &Digest<'_> = if ask.other_forms.is_empty() {
            digest
        } else {
            &once
        };
        if self.config.batch {
            let fetched = self.fetch_batch(local_id, &asks, &budget, digest).await?;
            return budget.finish(fetched);
        }
        let searches = asks.into_iter().map(|(t, url)| {
            let budget = &budget;
            async move {
                if t == "Patient" {
                    return self.read_patient(local_id, budget, digest).await;
                }
                self.search_all(url, t, Some(local_id), budget, digest, Seen::default())
                    .await
            }
        });
        let mut all = Fetched::default();
        for r in join_all(searches).await {
            let (resources, ms) = r?;
            all.resources.extend(resources);
            all.source_ms = max_ms(all.source_ms, ms);
        }
        budget.finish(all)
    }

    async fn open_document(
        &self,
        grant: &Grant,
        _at: &Location,
        id: &str,
        check: &Digest<'_>,
        cap: u64,
    ) -> Result<OpenedDocument, DocumentRefusal> {
        if !is_fhir_id(id) {
            return Err(DocumentRefusal::NotFound);
        }
        let base = self.config.base_url.as_str();
        let identity = match &self.identity {
            Some(signer) => Some(
                signer
                    .for_user(grant, base)
                    .map_err(DocumentRefusal::Source)?,
            ),
            None => None,
        };
        // A DocumentReference is small; 1 MiB is plenty.
        let budget = Budget::new(1 << 20, identity.clone());
        let mut url = self
            .url("DocumentReference", &[])
            .map_err(DocumentRefusal::Source)?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
        }
        let body = match self.get_body(url, &budget).await {
            Ok((body, _)) => body,
            Err(FailureReason::HttpStatus { status: 404 | 410 }) => {
                return Err(DocumentRefusal::NotFound)
            }
            Err(e) => return Err(DocumentRefusal::Source(e)),
        };
        let raw: &RawValue =
            serde_json::from_slice(&body).map_err(|e| DocumentRefusal::Source(not_json(&e)))?;
        let att = crate::document::check_reference(raw, id, check)?;
        let target = crate::document::resolve(&self.config.base_url, &att.url)?;
        let mut request = self.client.get(target).header(
            reqwest::header::ACCEPT,
            format!("{}, {};q=0.5", att.content_type, mcr_fhir::FHIR_JSON),
        );
        if let Some(token) = identity {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| DocumentRefusal::Source(transport_failure(&e)))?;
        crate::document::read_binary(response, &att.content_type, att.title, cap, |status, _| {
            FailureReason::HttpStatus { status }
        })
        .await
    }

    async fn patient_feed(
        &self,
        since: Option<&str>,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        let count = "1000".to_owned();
        let gt;
        let mut q: Vec<(&str, &str)> = vec![("_count", &count)];
        if let Some(s) = since {
            gt = format!("gt{s}");
            q.push(("_lastUpdated", &gt));
        }
        let url = self.url("Patient", &q)?;
        self.system_feed(url, "Patient", timeout, pages).await
    }

    async fn care_event_feed(
        &self,
        resource_type: &str,
        from: chrono::NaiveDate,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        let ge = format!("ge{}", from.format("%Y-%m-%d"));
        let url = self.url(resource_type, &[("date", &ge), ("_count", "1000")])?;
        self.system_feed(url, resource_type, timeout, pages).await
    }
}

impl HttpSource {
    /// Every page of a search the gateway itself makes (not for a user), into `pages`.
    async fn system_feed(
        &self,
        url: Url,
        resource_type: &str,
        timeout: Duration,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        // The index sync reads every patient: no per-view byte cap, but a page cap and a deadline.
        let identity = match &self.identity {
            Some(signer) => Some(signer.for_system(self.config.base_url.as_str())?),
            None => None,
        };
        let budget = Arc::new(Budget::new(u64::MAX / 4, identity));
        let me = HttpSource {
            limits: FederationConfig {
                max_pages: u32::MAX,
                ..self.limits.clone()
            },
            ..self.clone()
        };
        let keep = |r: Received<'_>| r.value();
        let feed = me.search_pages(
            url,
            resource_type,
            None,
            &budget,
            &keep,
            Pages::Send(&pages),
            Seen::default(),
        );
        tokio::time::timeout(timeout, feed)
            .await
            .map_err(|_| FailureReason::Timeout {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })??;
        // Every page read, but fewer than the source said it holds: a failed feed, saying so,
        // not a complete one.
        match budget.take_cut() {
            Some(short) => Err(short),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_timing_app_ms;
    use crate::client::{HttpSource, OtherForm, SourceConfig};

    #[test]
    fn the_other_forms_are_asked_by_the_parameter_the_plan_names() {
        let source = HttpSource::new(
            SourceConfig {
                id: mcr_domain::SourceId::parse("acute").expect("id"),
                organisation: mcr_domain::Organisation {
                    code: mcr_domain::OdsCode::parse("RWH").expect("ods"),
                    name: "Acute".into(),
                    kind: mcr_domain::OrgKind::AcuteTrust,
                    member: true,
                    suspended: false,
                },
                base_url: url::Url::parse("https://acute.example/fhir/").expect("url"),
                resource_types: Vec::new(),
                batch: false,
                kind: crate::client::SourceKind::FhirR4,
                gp_connect: None,
                deadline_ms: None,
                feed_timeout_secs: None,
                patient_search: crate::PatientSearch::Relative,
                identifier_search: crate::IdentifierSearch::Always,
            },
            reqwest::Client::new(),
            crate::FederationConfig::default(),
        );
        let url_with = |form: OtherForm, elsewhere: &[String]| {
            let url = source
                .other_form_url(&form, "p1", "9434765919", elsewhere, "200")
                .expect("url");
            let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            (url.path().to_owned(), query)
        };
        let url = |form: OtherForm| url_with(form, &[]);
        let nhs = "https://fhir.nhs.uk/Id/nhs-number|9434765919".to_owned();
        assert_eq!(
            url(OtherForm::Identifier {
                resource_type: "Condition".into(),
                param: "subject"
            }),
            (
                "/fhir/Condition".to_owned(),
                vec![
                    ("subject:identifier".to_owned(), nhs.clone()),
                    ("_count".to_owned(), "200".to_owned())
                ]
            )
        );
        assert_eq!(
            url(OtherForm::Identifier {
                resource_type: "AllergyIntolerance".into(),
                param: "patient"
            })
            .1[0],
            ("patient:identifier".to_owned(), nhs)
        );
        assert_eq!(
            url(OtherForm::Absolute {
                resource_type: "Condition".into(),
                param: "subject"
            })
            .1[0],
            (
                "subject".to_owned(),
                "https://acute.example/fhir/Patient/p1".to_owned()
            )
        );
        // With the patient's addresses at the region's other servers: one search, the
        // addresses as alternatives, a comma inside one escaped.
        assert_eq!(
            url_with(
                OtherForm::Absolute {
                    resource_type: "Condition".into(),
                    param: "subject"
                },
                &[
                    "https://gp.example/fhir/Patient/G1".to_owned(),
                    "https://odd.example/fhir/Patient/a,b".to_owned()
                ]
            )
            .1[0],
            (
                "subject".to_owned(),
                concat!(
                    "https://acute.example/fhir/Patient/p1,",
                    "https://gp.example/fhir/Patient/G1,",
                    "https://odd.example/fhir/Patient/a\\,b"
                )
                .to_owned()
            )
        );
    }

    #[test]
    fn reads_the_app_duration_of_a_server_timing_header() {
        assert_eq!(server_timing_app_ms("app;dur=12.5"), Some(12.5));
        assert_eq!(
            server_timing_app_ms("db;dur=3, app;desc=\"x\";dur=7"),
            Some(7.0)
        );
        assert_eq!(server_timing_app_ms("db;dur=3"), None);
        assert_eq!(server_timing_app_ms("app;dur=-1"), None);
        assert_eq!(server_timing_app_ms("app;dur=NaN"), None);
        assert_eq!(server_timing_app_ms("app"), None);
    }
}
