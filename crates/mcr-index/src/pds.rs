//! Tracing against the Personal Demographics Service (PDS FHIR API, R4): read a patient by NHS
//! number, search by demographics, and read what PDS says back (the current NHS number, the
//! restricted flag, a death), in the shapes of NHS England's published specification.
//!
//! PDS is the national authority on who a person is; the index takes from it what its
//! specification says must be honoured: a superseded NHS number leads to the current one
//! (a read answers with a different `id`), a restricted patient (`meta.security` `R`) is
//! flagged, a `deceasedDateTime` is a death. A search's `score` is 1.0 for an exact match and
//! less for a partial one; only a unique match at or above the configured score links a
//! record ([`PdsSettings::link_score`]); a lower one is for a person to look at.
//!
//! Access is application-restricted, as NHS England's API platform gives it: an access token
//! got for a signed JWT at the platform's token endpoint ([`token`]), renewed before it expires.
//!
//! Nothing PDS answers is logged; errors carry the Spine error code, never the patient.

pub mod token;

use chrono::NaiveDate;
use mcr_domain::{Clock, NhsNumber};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `[pds]`: where PDS is and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdsSettings {
    /// The API's base URL, e.g. `https://int.api.service.nhs.uk/personal-demographics/FHIR/R4`.
    pub base_url: String,
    /// The platform's OAuth 2.0 token endpoint, e.g. `https://int.api.service.nhs.uk/oauth2/token`:
    /// where the signed JWT is exchanged for an access token, and the JWT's `aud`.
    pub token_url: String,
    /// The application's API key from the platform's developer portal: the JWT's `iss` and `sub`.
    pub api_key: secrecy::SecretString,
    /// The key id (`kid`) the platform knows the application's public key by (in the JWKS the
    /// application registered).
    pub key_id: String,
    /// The application's RSA private key (PEM, PKCS#8 or PKCS#1; 2048 bits or more) the JWT is
    /// signed with (RS512). Read once at start; never logged.
    pub private_key: PathBuf,
    /// The lowest search score that links a record automatically (default 1.0: PDS's exact
    /// match). A unique match below it goes to the review queue.
    #[serde(default = "default_link_score")]
    pub link_score: f64,
    /// How long one request may take, milliseconds (default 5000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_link_score() -> f64 {
    1.0
}

fn default_timeout_ms() -> u64 {
    5000
}

impl PdsSettings {
    /// The checks that need no file or network: what is wrong, and in which key.
    pub fn validate(&self) -> Result<(), String> {
        use secrecy::ExposeSecret;
        for (key, url) in [("base_url", &self.base_url), ("token_url", &self.token_url)] {
            if !acceptable_url(url) {
                return Err(format!(
                    "{key} `{url}` must be an https:// URL (http:// only on a loopback address)"
                ));
            }
        }
        if self.api_key.expose_secret().trim().is_empty() {
            return Err(
                "api_key is empty: set the application's API key from the developer portal".into(),
            );
        }
        if self.key_id.trim().is_empty() {
            return Err(
                "key_id is empty: set the kid the application's public key is registered under"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.link_score) {
            return Err(format!(
                "link_score {} must be between 0 and 1",
                self.link_score
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(format!(
                "timeout_ms {} must be between 1 and 60000",
                self.timeout_ms
            ));
        }
        Ok(())
    }
}

/// `https://`, or `http://` to a loopback address (tests, the demo).
fn acceptable_url(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => u.host().is_some(),
        Ok(u) if u.scheme() == "http" => match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// What went wrong asking PDS (no patient data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PdsError {
    #[error("PDS could not be reached: {0}")]
    Unreachable(String),
    /// PDS answered with an error: the HTTP status and the Spine error code.
    #[error("PDS answered {status} {code}")]
    Refused { status: u16, code: String },
    /// The platform's token endpoint refused the signed JWT: its status, `error` and
    /// `error_description` (which name the fault in the JWT, e.g. "Invalid 'kid' header in
    /// client_assertion JWT - no matching public key").
    #[error("the PDS token endpoint refused the signed JWT: {status} {error}: {description}")]
    TokenRefused {
        status: u16,
        error: String,
        description: String,
    },
    /// The token endpoint could not be reached, or its answer was not a token.
    #[error("the PDS token endpoint: {0}")]
    TokenUnavailable(String),
    /// `[pds]` cannot be used as configured: what, and where.
    #[error("[pds] {0}")]
    Config(String),
    /// The answer did not have the specification's shape: what, and where.
    #[error("PDS answer unreadable: {0}")]
    Unreadable(String),
}

/// A patient as PDS gives them: what the index needs, nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct PdsPatient {
    /// The current NHS number (the resource's `id`).
    pub nhs_number: NhsNumber,
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    /// Absent for a restricted patient (PDS removes it).
    pub postcode: Option<String>,
    /// The home address's first line, normalised, for matching only; absent for a restricted
    /// patient (PDS removes the address, and the index keeps none for them anyway).
    pub address: Option<String>,
    /// The registered practice's ODS code; absent for a restricted patient.
    pub gp_practice: Option<String>,
    /// `meta.security` `R` (or `V`): location never shown.
    pub restricted: bool,
    /// `deceasedDateTime`, as PDS sends it.
    pub deceased: Option<String>,
    /// The NHS number a read asked for, when PDS answered with the record that superseded it.
    pub superseded: Option<NhsNumber>,
}

/// The security labels that mark a restricted record (v3-Confidentiality `R` restricted,
/// `V` very restricted), on a PDS Patient or a source's.
pub fn restricted_label(r: &Value) -> bool {
    r.pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| {
            s.get("system").and_then(Value::as_str)
                == Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")
                && matches!(s.get("code").and_then(Value::as_str), Some("R" | "V"))
        })
}

impl PdsPatient {
    /// Read a PDS `Patient`. Its `id` must be a valid NHS number.
    pub fn from_fhir(r: &Value) -> Result<Self, PdsError> {
        if r.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            return Err(PdsError::Unreadable("not a Patient".into()));
        }
        let id = r
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| PdsError::Unreadable("Patient.id missing".into()))?;
        let nhs_number = NhsNumber::parse(id)
            .map_err(|_| PdsError::Unreadable("Patient.id is not a valid NHS number".into()))?;
        let name = r.get("name").and_then(Value::as_array).and_then(|n| {
            n.iter()
                .find(|n| n.get("use").and_then(Value::as_str) == Some("usual"))
                .or_else(|| n.first())
        });
        let family = name
            .and_then(|n| n.get("family"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let given = name
            .and_then(|n| n.get("given"))
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let birth_date = match r.get("birthDate").and_then(Value::as_str) {
            None => None,
            Some(d) => Some(
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| PdsError::Unreadable("Patient.birthDate is not a date".into()))?,
            ),
        };
        let home = r.get("address").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|a| a.get("use").and_then(Value::as_str) == Some("home"))
                .or_else(|| a.first())
        });
        let postcode = home
            .and_then(|a| a.get("postalCode"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let address = crate::parse::address_line(home, r);
        let gp_practice = r
            .pointer("/generalPractitioner/0/identifier/value")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            nhs_number,
            family,
            given,
            birth_date,
            gender: r.get("gender").and_then(Value::as_str).map(str::to_owned),
            postcode,
            address,
            gp_practice,
            restricted: restricted_label(r),
            deceased: r
                .get("deceasedDateTime")
                .and_then(Value::as_str)
                .map(str::to_owned),
            superseded: None,
        })
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchAnswer {
    /// No one.
    None,
    /// One match, with its score (0.0 to 1.0).
    One(Box<PdsPatient>, f64),
    /// More than one: PDS's `TOO_MANY_MATCHES` (application-restricted access returns a
    /// unique match only), or a searchset of several.
    TooMany,
}

/// Read a search's answer: a `searchset` Bundle, or the OperationOutcome `TOO_MANY_MATCHES`.
pub fn read_search(body: &Value) -> Result<SearchAnswer, PdsError> {
    match body.get("resourceType").and_then(Value::as_str) {
        Some("OperationOutcome") => {
            let code = spine_code(body);
            if code.as_deref() == Some("TOO_MANY_MATCHES") {
                Ok(SearchAnswer::TooMany)
            } else {
                Err(PdsError::Refused {
                    status: 200,
                    code: code.unwrap_or_else(|| "unknown".into()),
                })
            }
        }
        Some("Bundle") => {
            let entries = body
                .get("entry")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match entries {
                [] => Ok(SearchAnswer::None),
                [e] => {
                    let score = e
                        .pointer("/search/score")
                        .and_then(Value::as_f64)
                        .ok_or_else(|| PdsError::Unreadable("entry.search.score missing".into()))?;
                    let resource = e
                        .get("resource")
                        .ok_or_else(|| PdsError::Unreadable("entry.resource missing".into()))?;
                    Ok(SearchAnswer::One(
                        Box::new(PdsPatient::from_fhir(resource)?),
                        score,
                    ))
                }
                _ => Ok(SearchAnswer::TooMany),
            }
        }
        _ => Err(PdsError::Unreadable(
            "neither a Bundle nor an OperationOutcome".into(),
        )),
    }
}

/// The Spine error code of an OperationOutcome's first issue.
pub fn spine_code(outcome: &Value) -> Option<String> {
    outcome
        .pointer("/issue/0/details/coding/0/code")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The demographics a trace searches by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceQuery<'a> {
    pub family: &'a str,
    pub given: &'a str,
    pub birth_date: NaiveDate,
    pub gender: Option<&'a str>,
    pub postcode: Option<&'a str>,
}

/// How a search is made ([`TraceQuery::params`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// Non-fuzzy on family, given, birth date and gender, without the postcode (PDS never
    /// returns a restricted patient to a search naming one).
    Exact,
    /// Fuzzy (Soundex names, history) on family, given, birth date, gender and postcode: the
    /// second try, whose partial matches score below 1.0.
    Fuzzy,
}

impl TraceQuery<'_> {
    /// The query parameters, one result asked for (application-restricted access).
    pub fn params(&self, kind: SearchKind) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("family", self.family.to_owned()),
            (
                "birthdate",
                format!("eq{}", self.birth_date.format("%Y-%m-%d")),
            ),
            ("_max-results", "1".to_owned()),
        ];
        if kind == SearchKind::Fuzzy {
            q.push(("_fuzzy-match", "true".to_owned()));
        }
        if let Some(g) = self.given.split_whitespace().next() {
            q.push(("given", g.to_owned()));
        }
        if let Some(g) = self
            .gender
            .filter(|g| matches!(*g, "male" | "female" | "other" | "unknown"))
        {
            q.push(("gender", g.to_owned()));
        }
        if let (SearchKind::Fuzzy, Some(p)) = (kind, self.postcode.filter(|p| !p.trim().is_empty()))
        {
            q.push(("address-postalcode", p.to_owned()));
        }
        q
    }
}

/// A PDS client: one connection pool, the access token it holds, counts of what it asked.
#[derive(Debug)]
pub struct PdsClient {
    http: reqwest::Client,
    settings: PdsSettings,
    auth: token::AccessTokens,
    requests: AtomicU64,
}

impl PdsClient {
    /// Reads the private key (an error names the file and what is wrong with it); asks for no
    /// token yet. `clock` dates the JWTs and decides when the token is renewed.
    pub fn new(settings: PdsSettings, clock: Arc<dyn Clock>) -> Result<Self, PdsError> {
        settings.validate().map_err(PdsError::Config)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build()
            .map_err(|e| PdsError::Unreachable(e.to_string()))?;
        let auth = token::AccessTokens::new(&settings, http.clone(), clock)?;
        Ok(Self {
            http,
            settings,
            auth,
            requests: AtomicU64::new(0),
        })
    }

    /// The access tokens this client gets and holds.
    pub fn access_tokens(&self) -> &token::AccessTokens {
        &self.auth
    }

    pub fn settings(&self) -> &PdsSettings {
        &self.settings
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One GET with the held access token (got first if none is held, or it is near expiry).
    /// A 401 means PDS no longer takes the token: it is dropped and the request made once more
    /// with a new one.
    async fn get(&self, url: &str, query: &[(&str, String)]) -> Result<(u16, Value), PdsError> {
        let first = self.get_once(url, query).await?;
        if first.0 != 401 {
            return Ok(first);
        }
        self.auth.forget().await;
        self.get_once(url, query).await
    }

    async fn get_once(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, Value), PdsError> {
        use secrecy::ExposeSecret;
        let bearer = self.auth.bearer().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let n = self.requests.load(Ordering::Relaxed);
        let answer = self
            .http
            .get(url)
            .query(query)
            .bearer_auth(bearer.expose_secret())
            .header("accept", "application/fhir+json")
            .header("x-request-id", request_id(n))
            .send()
            .await
            .map_err(|e| PdsError::Unreachable(e.without_url().to_string()))?;
        let status = answer.status().as_u16();
        let body: Value = answer
            .json()
            .await
            .map_err(|_| PdsError::Unreadable(format!("HTTP {status} body is not JSON")))?;
        Ok((status, body))
    }

    /// Read a patient by NHS number. `None` when PDS holds no such patient (404
    /// `RESOURCE_NOT_FOUND`); an invalidated one is an error (`INVALIDATED_RESOURCE`). A
    /// superseded number answers with the current record: its `nhs_number` differs.
    pub async fn read(&self, nhs: &NhsNumber) -> Result<Option<PdsPatient>, PdsError> {
        let base = self.settings.base_url.trim_end_matches('/');
        let (status, body) = self
            .get(&format!("{base}/Patient/{}", nhs.as_str()), &[])
            .await?;
        match status {
            200 => {
                let mut p = PdsPatient::from_fhir(&body)?;
                if &p.nhs_number != nhs {
                    p.superseded = Some(nhs.clone());
                }
                Ok(Some(p))
            }
            404 if spine_code(&body).as_deref() == Some("RESOURCE_NOT_FOUND") => Ok(None),
            _ => Err(PdsError::Refused {
                status,
                code: spine_code(&body).unwrap_or_else(|| "unknown".into()),
            }),
        }
    }

    /// Search by demographics.
    pub async fn search(
        &self,
        q: &TraceQuery<'_>,
        kind: SearchKind,
    ) -> Result<SearchAnswer, PdsError> {
        let base = self.settings.base_url.trim_end_matches('/');
        let (status, body) = self
            .get(&format!("{base}/Patient"), &q.params(kind))
            .await?;
        if status != 200 {
            return Err(PdsError::Refused {
                status,
                code: spine_code(&body).unwrap_or_else(|| "unknown".into()),
            });
        }
        read_search(&body)
    }
}

/// A request id in the UUID form PDS requires for `X-Request-ID` (random, never patient data);
/// also a JWT's `jti`.
pub(crate) fn request_id(n: u64) -> String {
    let r: u128 = rand::random::<u128>() ^ u128::from(n);
    let h = format!("{r:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// What the traces of one source's records came to, for the sync report (no patient data).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TraceCounts {
    /// Traces asked.
    pub asked: usize,
    /// Linked to the NHS number PDS gave (a unique match at or above the link score).
    pub linked: usize,
    /// A unique match below the link score: sent to the review queue.
    pub review: usize,
    /// PDS found no one.
    pub not_found: usize,
    /// PDS found more than one.
    pub too_many: usize,
    /// Records without a family name or birth date to search by.
    pub untraceable: usize,
    /// PDS unreachable or refusing, or no access token (the token endpoint refused the signed
    /// JWT): the record stays as the index left it.
    pub failed: usize,
    /// Why traces failed, in the error's own words (the first reason met in this sync, e.g.
    /// "the PDS token endpoint refused the signed JWT: 401 public_key error: JWT signature
    /// verification failed"); `None` when none failed. Never patient data.
    pub failure: Option<String>,
    /// Of those PDS found: restricted, deceased, and superseded numbers followed.
    pub restricted: usize,
    pub deceased: usize,
    pub superseded: usize,
}

/// One trace as the audit trail records it: which source record, what PDS answered and what
/// the index did with it. Never demographics: the source's record id and the NHS number PDS
/// gave are all it names (the audit already holds both kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    pub source: mcr_domain::SourceId,
    pub local_id: String,
    /// What came of it.
    pub outcome: TraceOutcome,
    /// The NHS number PDS gave (the current one, superseded numbers followed), when it found one.
    pub nhs_number: Option<NhsNumber>,
    /// PDS's match score, when it found one.
    pub score: Option<f64>,
    /// The number PDS matched was superseded and the current one was followed.
    pub superseded: bool,
    /// PDS says the patient has died: marked deceased.
    pub deceased: bool,
    /// PDS says the patient is restricted (S-flagged): marked restricted.
    pub restricted: bool,
}

/// What came of one trace, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceOutcome {
    /// Linked to the NHS number PDS gave.
    Linked,
    /// A pair for the review queue (a unique match below the link score).
    Review,
    /// PDS found no one.
    NotFound,
    /// PDS found more than one.
    TooMany,
    /// Not traceable: no family name, given name or birth date (in the record or in PDS's).
    Untraceable,
    /// PDS unreachable or refusing.
    Failed,
}

impl TraceOutcome {
    /// The code the audit record's basis carries.
    pub fn code(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Review => "review",
            Self::NotFound => "not-found",
            Self::TooMany => "too-many",
            Self::Untraceable => "untraceable",
            Self::Failed => "failed",
        }
    }
}

/// Where every trace is audited, before anything it found is written to the index: a trace
/// that cannot be audited changes nothing (the sync fails). The gateway writes them to the
/// audit trail.
#[async_trait::async_trait]
pub trait TraceAudit: Send + Sync + std::fmt::Debug {
    async fn traced(&self, traces: &[TraceRecord]) -> Result<(), mcr_store::StoreError>;
}

/// What a trace concluded for one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    /// A unique match at or above the link score: the record is this patient (current NHS
    /// number, superseded numbers followed).
    Traced(Box<PdsPatient>, f64),
    /// A unique match below the link score: for a person to look at, never linked silently.
    Review(Box<PdsPatient>, f64),
    /// PDS found no one.
    NotFound,
    /// PDS found more than one.
    TooMany,
    /// The record cannot be traced (no birth date or no family name).
    Untraceable,
}

impl Trace {
    /// A short code for reports and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Traced(..) => "traced",
            Self::Review(..) => "review",
            Self::NotFound => "not-found",
            Self::TooMany => "too-many",
            Self::Untraceable => "untraceable",
        }
    }
}

impl PdsClient {
    /// Trace one person by their demographics: a non-fuzzy search, then, if it found no
    /// one, a fuzzy one; for a unique match, a read by NHS number (the full record,
    /// superseded numbers followed to the current one).
    pub async fn trace(&self, q: Option<TraceQuery<'_>>) -> Result<Trace, PdsError> {
        let Some(q) = q.filter(|q| !q.family.trim().is_empty() && !q.given.trim().is_empty())
        else {
            return Ok(Trace::Untraceable);
        };
        let mut answer = self.search(&q, SearchKind::Exact).await?;
        if answer == SearchAnswer::None {
            answer = self.search(&q, SearchKind::Fuzzy).await?;
        }
        match answer {
            SearchAnswer::None => Ok(Trace::NotFound),
            SearchAnswer::TooMany => Ok(Trace::TooMany),
            SearchAnswer::One(found, score) => {
                let current = self
                    .read(&found.nhs_number)
                    .await?
                    .map(Box::new)
                    .unwrap_or(found);
                if score >= self.settings.link_score {
                    Ok(Trace::Traced(current, score))
                } else {
                    Ok(Trace::Review(current, score))
                }
            }
        }
    }
}
