use async_trait::async_trait;
use futures::future::join_all;
use mcr_domain::{FailureReason, Organisation, SourceId, SourceJson};
use mcr_fhir::Doc;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::time::Duration;
use url::Url;

use crate::document::{DocumentRefusal, OpenedDocument};
use crate::identity::{IdentitySigner, Requester};
use crate::merge::Digested;
use mcr_policy::Grant;
use std::sync::Arc;

/// A source system as configured.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    pub id: SourceId,
    pub organisation: Organisation,
    /// FHIR base URL, e.g. `http://127.0.0.1:8101` (no trailing slash needed).
    pub base_url: Url,
    /// The resource types this source holds per patient.
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

/// Where one source holds a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: SourceId,
    pub local_id: String,
    /// The patient's registered GP practice (ODS code) as the index has it: a GP Connect
    /// source with a directory asks that practice's endpoint.
    pub registered_practice: Option<String>,
}

/// What one source answered for one view.
#[derive(Debug)]
pub struct SourceFetch {
    pub source: SourceId,
    pub org_code: mcr_domain::OdsCode,
    pub org_name: String,
    pub base_url: String,
    /// The resources as sent, each digested as it arrived, or why there are none.
    pub outcome: Result<Vec<Digested>, FailureReason>,
    pub elapsed_ms: u64,
    /// The source's own handling time for this view, as it reported it (`Server-Timing`), along
    /// its slowest concurrent search, in milliseconds; `None` when it did not say or failed.
    pub source_ms: Option<f64>,
    /// What the source said about its answer, for the banner (GP Connect list warnings).
    pub warnings: Vec<String>,
    /// The source sent part of the record, then stopped for this reason (its deadline or the
    /// size cap): what arrived is in `outcome`, shown, and the view says the rest is missing.
    pub cut_short: Option<FailureReason>,
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

/// One resource as a source sent it: read, for the checks and the merge, and the text it came
/// as, for the API to return unchanged. Both borrow the page being read; what a digest keeps
/// it copies ([`Received::json`], [`Received::value`]), so resources dropped by the grant or
/// withheld are never copied at all.
#[derive(Clone, Copy)]
pub struct Received<'a> {
    pub doc: &'a Doc<'a>,
    pub raw: &'a RawValue,
}

impl Received<'_> {
    /// The text as received, kept.
    pub fn json(&self) -> SourceJson {
        SourceJson::from_raw(self.raw.to_owned())
    }

    /// A parsed copy (for the few resources kept whole).
    pub fn value(&self) -> Value {
        Value::from(self.doc)
    }
}

impl std::fmt::Debug for Received<'_> {
    /// Clinical data: only its size, never its content, may reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Received({} bytes)", self.raw.get().len())
    }
}

/// Read one resource's text. The page's parser has already checked it is JSON; this fails
/// only for nesting past serde_json's limit.
fn read_resource(raw: &RawValue) -> Result<Doc<'_>, FailureReason> {
    Doc::parse(raw.get()).map_err(|_| FailureReason::Malformed {
        detail: "a resource could not be read".into(),
    })
}

/// A search result page as read off the wire: only what the gateway looks at is decoded;
/// each resource is kept as its text.
#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<Value>,
    /// How many resources the search matched in all (optional in R4).
    total: Option<Value>,
    link: Option<Value>,
    #[serde(borrow)]
    entry: Option<Vec<PageEntry<'a>>>,
}

/// Where a search's pages go: gathered into one list, or handed over one by one.
enum Pages<'a, T> {
    Collect(&'a mut Vec<T>),
    Send(&'a tokio::sync::mpsc::Sender<Vec<T>>),
}

/// One page read: what was kept, the next page, the search's total if the page says it, and
/// how many resources of the type asked for the page sent.
type PageRead<T> = (Vec<T>, Option<Url>, Option<u64>, u64);

/// What a search has seen so far: pages read, the total its first page said it matched
/// (`Bundle.total`), and the resources of the type asked for sent so far. A search whose
/// pages end with fewer sent than its total said is a shortfall
/// ([`FailureReason::Unpaged`]), never silence.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    pages: u32,
    total: Option<u64>,
    sent: u64,
}

impl Seen {
    /// One more page: its total (the first page's counts) and how many it sent.
    fn page(&mut self, total: Option<u64>, sent: u64) {
        self.pages += 1;
        self.total = self.total.or(total);
        self.sent += sent;
    }

    /// The search ended (no next page): the shortfall, if the source sent fewer than it said.
    fn shortfall(&self, want: &str) -> Option<FailureReason> {
        let held = self.total?;
        (held > self.sent).then(|| FailureReason::Unpaged {
            resource_type: want.to_owned(),
            held,
            sent: self.sent,
        })
    }
}

/// One `Bundle.entry`: its resource as text, borrowed from the page. An entry that is not an object, or has no
/// resource, is junk and is skipped (as a `Value` reader would). Read in one pass, keeping
/// the last `resource` key as a `Value` reader would.
struct PageEntry<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for PageEntry<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct EntryVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EntryVisitor<'a> {
            type Value = PageEntry<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Bundle entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageEntry<'a>, A::Error> {
                let mut resource = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "resource" {
                        resource = Some(map.next_value::<&'de RawValue>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PageEntry(resource.filter(|r| r.get() != "null")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PageEntry<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PageEntry(None))
            }
            fn visit_unit<E>(self) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
        }
        d.deserialize_any(EntryVisitor(std::marker::PhantomData))
    }
}

/// Why an answer could not be read: not JSON at all, or JSON of the wrong shape.
fn not_json(e: &serde_json::Error) -> FailureReason {
    let what = if e.is_data() {
        "not a FHIR resource of the expected shape"
    } else {
        "not JSON"
    };
    FailureReason::Malformed {
        detail: format!("{what} at line {} column {}", e.line(), e.column()),
    }
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
        }
    }
}

/// What the view keeps of each resource a source sends ([`crate::digest`]).
pub type Digest<'a> = dyn Fn(Received<'_>) -> Digested + Send + Sync + 'a;

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
}

impl Ask {
    /// Ask within `deadline` from now, signing the identity token afresh.
    pub fn within(deadline: Duration) -> Self {
        Self {
            signed: None,
            until: tokio::time::Instant::now() + deadline,
            deadline,
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

/// A FHIR R4 server over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSource {
    config: SourceConfig,
    client: reqwest::Client,
    limits: FederationConfig,
    identity: Option<Arc<IdentitySigner>>,
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
    fn ask_url(
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

    /// [`HttpSource::ask_url`] relative to the base URL, as a batch entry names it.
    fn batch_entry_url(
        &self,
        resource_type: &str,
        local_id: &str,
        count: &str,
    ) -> Result<String, FailureReason> {
        let url = self.ask_url(resource_type, local_id, count)?;
        let base = self.config.base_url.as_str().trim_end_matches('/');
        url.as_str()
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
            .ok_or_else(|| FailureReason::Malformed {
                detail: "a batch entry is not under the configured base URL".into(),
            })
    }

    /// Follow a search through all its pages, keeping the resources of type `want`.
    /// `budget` is the byte allowance left for this source in this view.
    /// `pages_before` pages of it were read already (the first, in a batch).
    async fn search_all<T: Send>(
        &self,
        first: Url,
        want: &str,
        patient: Option<&str>,
        budget: &Budget,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
        seen: Seen,
    ) -> Result<(Vec<T>, Option<f64>), FailureReason> {
        let mut out = Vec::new();
        let ms = self
            .search_pages(
                first,
                want,
                patient,
                budget,
                keep,
                Pages::Collect(&mut out),
                seen,
            )
            .await?;
        Ok((out, ms))
    }

    /// [`HttpSource::search_all`], handing over each page as it is read (to `pages_out`), so that
    /// a reader of millions of records never holds more than a few pages.
    #[expect(
        clippy::too_many_arguments,
        reason = "one search's whole state; a struct for it would be built at each call"
    )]
    async fn search_pages<T: Send>(
        &self,
        first: Url,
        want: &str,
        patient: Option<&str>,
        budget: &Budget,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
        mut pages_out: Pages<'_, T>,
        mut seen: Seen,
    ) -> Result<Option<f64>, FailureReason> {
        let mut source_ms: Option<f64> = None;
        let mut next = Some(first);
        while let Some(url) = next.take() {
            if seen.pages >= self.limits.max_pages {
                return Err(FailureReason::Malformed {
                    detail: format!("more than {} pages", self.limits.max_pages),
                });
            }
            let Some((body, ms)) = budget.page(self.get_body(url, budget)).await? else {
                // Cut short by the deadline: said as that.
                return Ok(source_ms);
            };
            source_ms = add_ms(source_ms, ms);
            let (out, after, total, sent) = self.take_page(&body, want, patient, keep)?;
            seen.page(total, sent);
            next = after;
            match &mut pages_out {
                Pages::Collect(all) => all.extend(out),
                Pages::Send(tx) => tx.send(out).await.map_err(|_| FailureReason::Unreachable {
                    detail: "the reader of this feed stopped".into(),
                })?,
            }
        }
        if let Some(short) = seen.shortfall(want) {
            budget.short(short);
        }
        Ok(source_ms)
    }

    /// One page of a search: the resources of type `want` (about `patient`, when given) as
    /// `keep` keeps them, and the next page's URL.
    fn take_page<T>(
        &self,
        body: &[u8],
        want: &str,
        patient: Option<&str>,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
    ) -> Result<PageRead<T>, FailureReason> {
        // The page's resources are read in place: nothing is copied but what is kept.
        let page: Page<'_> = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
        if page.resource_type.as_ref().and_then(Value::as_str) != Some("Bundle") {
            return Err(FailureReason::Malformed {
                detail: "a search did not return a Bundle".into(),
            });
        }
        let next = match page.link.as_ref().and_then(|l| mcr_fhir::next_link_in(l)) {
            Some(link) => Some(self.same_origin(link)?),
            None => None,
        };
        let total = page.total.as_ref().and_then(Value::as_u64);
        let mut out = Vec::new();
        let mut sent = 0;
        for PageEntry(raw) in page.entry.unwrap_or_default() {
            let Some(raw) = raw else { continue };
            let doc = read_resource(raw)?;
            if mcr_fhir::resource_type(&doc) == Some(want) {
                sent += 1;
            }
            if mcr_fhir::resource_type(&doc) != Some(want) || mcr_fhir::resource_id(&doc).is_none()
            {
                // Included resources (e.g. OperationOutcome) or junk: not part of the record.
                continue;
            }
            if let Some(p) = patient {
                // A source that answers with another patient's data is wrong; never show it
                // as this patient's. A Patient is checked here; every other resource is
                // tied to the patient (in any form of reference) as it is digested, and
                // what cannot be tied is counted there and said in the view.
                if want == "Patient" && mcr_fhir::resource_id(&doc) != Some(p) {
                    continue;
                }
            }
            out.push(keep(Received { doc: &doc, raw }));
        }
        Ok((out, next, total, sent))
    }

    /// A view's searches and read in one FHIR `batch`, answered in order by one
    /// `batch-response`; each search's later pages are then followed side by side. The source's
    /// time is the batch's plus the slowest search's later pages.
    async fn fetch_batch(
        &self,
        local_id: &str,
        types: &[&str],
        budget: &Budget,
        digest: &Digest<'_>,
    ) -> Result<Fetched, FailureReason> {
        let count = self.limits.page_size.to_string();
        // Written out directly: building it as a `Value` tree cost each source's request
        // tens of microseconds before it could leave, and every view waits for the last.
        let mut batch = String::with_capacity(64 + 96 * types.len());
        batch.push_str(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
        for (i, t) in types.iter().enumerate() {
            if i > 0 {
                batch.push(',');
            }
            let url = Value::String(self.batch_entry_url(t, local_id, &count)?);
            batch.push_str(r#"{"request":{"method":"GET","url":"#);
            batch.push_str(&url.to_string());
            batch.push_str("}}");
        }
        batch.push_str("]}");
        let request = self
            .client
            .post(self.config.base_url.clone())
            .header(reqwest::header::CONTENT_TYPE, mcr_fhir::FHIR_JSON)
            .body(batch);
        let mut all = Fetched::default();
        let mut more = Vec::new();
        let batch_ms = {
            let Some((answer, ms)) = budget.page(self.body_of(request, budget)).await? else {
                return Ok(all);
            };
            for (t, raw) in types.iter().zip(batch_entries(&answer, types.len())?) {
                if *t == "Patient" {
                    all.resources.push(patient_from(raw, local_id, digest)?);
                    continue;
                }
                let (kept, next, total, sent) =
                    self.take_page(raw.get().as_bytes(), t, Some(local_id), digest)?;
                all.resources.extend(kept);
                let mut seen = Seen::default();
                seen.page(total, sent);
                match next {
                    Some(next) => more.push((next, *t, seen)),
                    None => {
                        if let Some(short) = seen.shortfall(t) {
                            budget.short(short);
                        }
                    }
                }
            }
            ms
        };
        let mut slowest: Option<f64> = None;
        let later = more
            .into_iter()
            .map(|(next, t, seen)| self.search_all(next, t, Some(local_id), budget, digest, seen));
        for r in join_all(later).await {
            let (resources, ms) = r?;
            all.resources.extend(resources);
            slowest = match (slowest, ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        all.source_ms = add_ms(batch_ms, slowest);
        Ok(all)
    }

    /// A `next` link must point back at the same server: a hostile source must not be able
    /// to send the gateway elsewhere.
    fn same_origin(&self, link: &str) -> Result<Url, FailureReason> {
        let url = self
            .config
            .base_url
            .join(link)
            .map_err(|_| FailureReason::Malformed {
                detail: "a paging link is not a URL".into(),
            })?;
        if url.origin() != self.config.base_url.origin() {
            return Err(FailureReason::Malformed {
                detail: "a paging link points to another server".into(),
            });
        }
        Ok(url)
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
    async fn get_body(
        &self,
        url: Url,
        budget: &Budget,
    ) -> Result<(Vec<u8>, Option<f64>), FailureReason> {
        self.body_of(self.client.get(url), budget).await
    }

    /// `request` sent with the identity token, and its answer's body within `budget`.
    async fn body_of(
        &self,
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
}

/// A `batch-response` as read off the wire: only the entries' statuses are decoded; each
/// resource is kept as its text.
#[derive(serde::Deserialize)]
struct BatchAnswer<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(borrow)]
    entry: Option<Vec<BatchEntry<'a>>>,
}

#[derive(serde::Deserialize)]
struct BatchEntry<'a> {
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
    response: Option<BatchEntryResponse>,
}

#[derive(serde::Deserialize)]
struct BatchEntryResponse {
    status: Option<String>,
}

/// The resource of each entry of a `batch-response` to `asked` requests, in order. An entry
/// that failed fails the whole answer, as a failed search would.
fn batch_entries(body: &[u8], asked: usize) -> Result<Vec<&RawValue>, FailureReason> {
    let answer: BatchAnswer<'_> = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let is = |v: &Option<Value>, s: &str| v.as_ref().and_then(Value::as_str) == Some(s);
    if !is(&answer.resource_type, "Bundle") || !is(&answer.kind, "batch-response") {
        return Err(FailureReason::Malformed {
            detail: "a batch was not answered with a batch-response Bundle".into(),
        });
    }
    let entries = answer.entry.unwrap_or_default();
    if entries.len() != asked {
        return Err(FailureReason::Malformed {
            detail: format!(
                "a batch of {asked} was answered with {} entries",
                entries.len()
            ),
        });
    }
    entries
        .into_iter()
        .map(|e| {
            let status = e
                .response
                .and_then(|r| r.status)
                .and_then(|s| s.get(..3).and_then(|code| code.parse::<u16>().ok()))
                .ok_or_else(|| FailureReason::Malformed {
                    detail: "a batch entry has no status".into(),
                })?;
            if !(200..300).contains(&status) {
                return Err(FailureReason::HttpStatus { status });
            }
            e.resource.ok_or_else(|| FailureReason::Malformed {
                detail: "a batch entry has no resource".into(),
            })
        })
        .collect()
}

/// A `Patient` read's answer, if it is the one asked for.
fn patient_from(
    raw: &RawValue,
    local_id: &str,
    digest: &Digest<'_>,
) -> Result<Digested, FailureReason> {
    let doc = read_resource(raw)?;
    if mcr_fhir::resource_type(&doc) != Some("Patient")
        || mcr_fhir::resource_id(&doc) != Some(local_id)
    {
        return Err(FailureReason::Malformed {
            detail: "a Patient read returned something else".into(),
        });
    }
    Ok(digest(Received { doc: &doc, raw }))
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

/// One call to a source, shared by its concurrent searches: the bytes it may still send in
/// this view, and the signed identity sent with each request.
#[derive(Debug)]
struct Budget {
    left: std::sync::atomic::AtomicI64,
    limit: u64,
    identity: Option<String>,
    /// When to stop asking (`None`: a feed, bounded by its own timeout).
    until: Option<tokio::time::Instant>,
    deadline: FailureReason,
    /// Why the searches stopped short, once one has.
    cut: std::sync::Mutex<Option<FailureReason>>,
}

impl Budget {
    fn new(limit: u64, identity: Option<String>) -> Self {
        Self {
            left: std::sync::atomic::AtomicI64::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            limit,
            identity,
            until: None,
            deadline: FailureReason::Timeout { after_ms: 0 },
            cut: std::sync::Mutex::new(None),
        }
    }

    /// A view's budget: the byte cap, and `ask`'s deadline.
    fn for_view(limit: u64, identity: Option<String>, ask: &Ask) -> Self {
        Self {
            until: Some(ask.until),
            deadline: ask.timeout(),
            ..Self::new(limit, identity)
        }
    }

    /// A page's answer within the deadline. A page the deadline or the size cap stopped is
    /// `Ok(None)`: the search stops there and the view keeps what arrived, cut short.
    async fn page<T>(
        &self,
        answer: impl std::future::Future<Output = Result<T, FailureReason>>,
    ) -> Result<Option<T>, FailureReason> {
        let answered = match self.until {
            Some(until) => match tokio::time::timeout_at(until, answer).await {
                Ok(answered) => answered,
                Err(_) => Err(self.deadline.clone()),
            },
            None => answer.await,
        };
        match answered {
            Ok(page) => Ok(Some(page)),
            Err(reason @ (FailureReason::Timeout { .. } | FailureReason::TooLarge { .. }))
                if self.until.is_some() =>
            {
                let mut cut = self
                    .cut
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cut.get_or_insert(reason);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// A search ended with fewer resources than it said it matched: the view is cut short
    /// for that reason (the first such reason is kept, as for a deadline).
    fn short(&self, reason: FailureReason) {
        let mut cut = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Several searches short: one reason naming them all, with their sums.
        if let (
            Some(FailureReason::Unpaged {
                resource_type,
                held,
                sent,
            }),
            FailureReason::Unpaged {
                resource_type: t,
                held: h,
                sent: n,
            },
        ) = (cut.as_mut(), &reason)
        {
            resource_type.push_str(" and ");
            resource_type.push_str(t);
            *held += h;
            *sent += n;
            return;
        }
        cut.get_or_insert(reason);
    }

    /// The reason a search stopped short, if one did (taken).
    fn take_cut(&self) -> Option<FailureReason> {
        self.cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// `fetched`, cut short if a search stopped early; nothing at all arrived: the reason.
    fn finish(&self, mut fetched: Fetched) -> Result<Fetched, FailureReason> {
        let cut = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(reason) = cut {
            if fetched.resources.is_empty() {
                return Err(reason);
            }
            fetched.cut_short = Some(reason);
        }
        Ok(fetched)
    }

    fn take(&self, n: u64) -> Result<(), FailureReason> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let before = self.left.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        if before.saturating_sub(n) < 0 {
            Err(FailureReason::TooLarge {
                limit_bytes: self.limit,
            })
        } else {
            Ok(())
        }
    }

    fn give_back(&self, n: u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.left.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

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

fn add_ms(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

pub(crate) fn transport_failure(e: &reqwest::Error) -> FailureReason {
    if e.is_timeout() {
        FailureReason::Timeout { after_ms: 0 }
    } else if let Some(detail) = mcr_tls::describe_tls_failure(e) {
        // A source whose certificate does not chain to the regional CA is never trusted, and
        // one that refuses our certificate cannot be asked: both are failed sources.
        FailureReason::Unreachable {
            detail: detail.into(),
        }
    } else if e.is_connect() {
        FailureReason::Unreachable {
            detail: "connection refused or failed".into(),
        }
    } else if e.is_body() || e.is_decode() {
        FailureReason::Malformed {
            detail: "the answer was cut off".into(),
        }
    } else {
        FailureReason::Unreachable {
            detail: "the connection failed".into(),
        }
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
        let budget = Budget::for_view(self.limits.max_bytes_per_source, identity, &ask);
        if self.config.batch {
            let fetched = self.fetch_batch(local_id, types, &budget, digest).await?;
            return budget.finish(fetched);
        }
        let count = self.limits.page_size.to_string();
        let searches = types.iter().map(|t| {
            let budget = &budget;
            let count = &count;
            async move {
                if *t == "Patient" {
                    return self.read_patient(local_id, budget, digest).await;
                }
                let url = self.ask_url(t, local_id, count)?;
                self.search_all(url, t, Some(local_id), budget, digest, Seen::default())
                    .await
            }
        });
        let mut all = Fetched::default();
        for r in join_all(searches).await {
            let (resources, ms) = r?;
            all.resources.extend(resources);
            all.source_ms = match (all.source_ms, ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
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
        let budget = Budget::new(u64::MAX / 4, identity);
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
        // Every page read, but fewer patients than the source said it holds: a failed feed,
        // saying so, not a complete one.
        match budget.take_cut() {
            Some(short) => Err(short),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        batch_entries, not_json, server_timing_app_ms, HttpSource, Page, PageEntry, Received,
        SourceConfig,
    };
    use mcr_domain::FailureReason;

    fn page(json: &str) -> Result<Vec<Option<String>>, FailureReason> {
        let p: Page = serde_json::from_str(json).map_err(|e| not_json(&e))?;
        Ok(p.entry
            .unwrap_or_default()
            .into_iter()
            .map(|PageEntry(r)| r.map(|r| r.get().to_owned()))
            .collect())
    }

    #[test]
    fn a_page_keeps_each_resource_as_sent_and_skips_junk_entries() {
        let got = page(
            r#"{"resourceType":"Bundle","entry":[
                {"fullUrl":"x","resource":{"resourceType":"Condition","id":"c1","note":[{"text":"caf\u00e9 <b>"}]}},
                7, "text", null, [1,2], {"search":{"mode":"match"}}, {"resource":null},
                {"resource":{"id":"first"},"resource":{"id":"last"}}
            ]}"#,
        )
        .expect("reads");
        assert_eq!(
            got,
            [
                Some(
                    r#"{"resourceType":"Condition","id":"c1","note":[{"text":"caf\u00e9 <b>"}]}"#
                        .to_owned()
                ),
                None,
                None,
                None,
                None,
                None,
                None,
                // As a Value reader would: the last of a repeated key wins.
                Some(r#"{"id":"last"}"#.to_owned()),
            ]
        );
        // Read for the merge, text unchanged for the API.
        let text = got[0].clone().expect("kept");
        let raw: &serde_json::value::RawValue = serde_json::from_str(&text).expect("raw");
        let doc = super::read_resource(raw).expect("reads");
        let r = Received { doc: &doc, raw };
        assert_eq!(r.value()["note"][0]["text"], "café <b>");
        assert!(r.json().json().contains(r"caf\u00e9"));
    }

    #[test]
    fn a_page_of_the_wrong_shape_or_not_json_says_which() {
        let shape = page(r#"{"resourceType":"Bundle","entry":{"resource":{}}}"#).unwrap_err();
        assert!(
            matches!(&shape, FailureReason::Malformed { detail } if detail.starts_with("not a FHIR resource of the expected shape")),
            "{shape:?}"
        );
        let garbage = page(r#"{"resourceType":"Bundle","entry":[{"#).unwrap_err();
        assert!(
            matches!(&garbage, FailureReason::Malformed { detail } if detail.starts_with("not JSON at line 1")),
            "{garbage:?}"
        );
        assert_eq!(
            page(r#"{"resourceType":"Bundle","entry":null}"#).expect("empty"),
            []
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

    #[test]
    fn a_batch_asks_for_a_read_and_searches_by_relative_url() {
        let source = HttpSource::new(
            SourceConfig {
                id: mcr_domain::SourceId::parse("gp").expect("id"),
                organisation: mcr_domain::Organisation {
                    code: mcr_domain::OdsCode::parse("E82000").expect("ods"),
                    name: "GP".into(),
                    kind: mcr_domain::OrgKind::GpPractice,
                    member: true,
                    suspended: false,
                },
                base_url: url::Url::parse("https://gp.example/fhir/R4/").expect("url"),
                resource_types: vec!["Condition".into()],
                batch: true,
                kind: super::SourceKind::FhirR4,
                gp_connect: None,
                deadline_ms: None,
                feed_timeout_secs: None,
            },
            reqwest::Client::new(),
            crate::FederationConfig::default(),
        );
        let batch_entry_url = |t: &str, id: &str, count: &str| source.batch_entry_url(t, id, count);
        assert_eq!(
            batch_entry_url("Condition", "GP 1&2", "200").expect("url"),
            "Condition?patient=GP+1%262&_count=200"
        );
        assert_eq!(
            batch_entry_url("Patient", "GP-000181", "200").expect("url"),
            "Patient/GP-000181"
        );
        assert_eq!(
            batch_entry_url("Patient", "a/b?c", "200").expect("url"),
            "Patient/a%2Fb%3Fc"
        );
    }

    #[test]
    fn a_batch_answer_gives_each_entrys_resource_in_order_or_says_what_is_wrong() {
        let ok = r#"{"resourceType":"Bundle","type":"batch-response","entry":[
            {"resource":{"resourceType":"Bundle","type":"searchset"},"response":{"status":"200 OK"}},
            {"resource":{"resourceType":"Patient","id":"p1"},"response":{"status":"200"}}]}"#;
        let got = batch_entries(ok.as_bytes(), 2).expect("read");
        assert_eq!(got.len(), 2);
        assert!(got[0].get().contains("searchset") && got[1].get().contains("p1"));

        let malformed = |body: &str, asked: usize| match batch_entries(body.as_bytes(), asked) {
            Err(FailureReason::Malformed { detail }) => detail,
            other => panic!("{body}: {other:?}"),
        };
        assert!(malformed(ok, 3).contains("batch of 3 was answered with 2 entries"));
        assert!(malformed(
            r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#,
            0
        )
        .contains("batch-response"));
        assert!(malformed(
            r#"{"resourceType":"Bundle","type":"batch-response","entry":[{"resource":{}}]}"#,
            1
        )
        .contains("no status"));
        assert!(malformed(r#"{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200 OK"}}]}"#, 1)
            .contains("no resource"));
        assert!(malformed("<html>", 1).contains("not JSON"));
        // An entry that failed fails the source, with the entry's status.
        let failed = r#"{"resourceType":"Bundle","type":"batch-response","entry":[
            {"resource":{"resourceType":"Patient","id":"p1"},"response":{"status":"200 OK"}},
            {"response":{"status":"404 Not Found","outcome":{"resourceType":"OperationOutcome"}}}]}"#;
        assert!(matches!(
            batch_entries(failed.as_bytes(), 2),
            Err(FailureReason::HttpStatus { status: 404 })
        ));
    }
}
