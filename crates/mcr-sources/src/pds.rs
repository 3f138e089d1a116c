//! A simulated Personal Demographics Service (PDS FHIR API, R4), answering patient read and
//! search in the shapes and with the error codes of NHS England's published specification
//! (github.com/NHSDigital/personal-demographics-service-api, `specification/`), in
//! application-restricted access mode: a search gives one unique match or none.
//!
//! What it honours, as PDS does: a read of a superseded NHS number answers with the current
//! record (its `id` differs from the one asked for); an invalidated number is 404
//! `INVALIDATED_RESOURCE`; a restricted patient (`meta.security` `R`) is answered without
//! `address`, `telecom`, `contact` and `generalPractitioner`, and is never found by a search
//! that names a postcode or a practice; a deceased patient carries `deceasedDateTime`.
//!
//! Access is application-restricted, as on NHS England's API platform: the server also answers
//! the platform's token endpoint ([`token`]: a signed JWT checked against the application's
//! registered public keys), and a request to PDS needs an access token that endpoint issued
//! and that has not expired.

mod token;

pub use token::{PdsAccess, TOKEN_PATH, TOKEN_SECONDS};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where the API lives under the server, as on `api.service.nhs.uk`.
pub const BASE_PATH: &str = "/personal-demographics/FHIR/R4";
const SPINE_CODES: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const VERIFICATION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";

/// One person PDS holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdsPerson {
    pub nhs_number: String,
    pub family: String,
    pub given: Vec<String>,
    /// `male`, `female`, `other` or `unknown`.
    pub gender: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    pub address_lines: Vec<String>,
    pub postcode: String,
    /// The registered practice's ODS code.
    pub gp_practice: Option<String>,
    /// `meta.security` `R`: address, telecom and practice are never sent.
    pub restricted: bool,
    /// `deceasedDateTime`, when PDS holds a death.
    pub deceased: Option<String>,
}

impl PdsPerson {
    /// A person with the demo's address and practice, unrestricted and alive.
    pub fn new(nhs: &str, family: &str, given: &str, gender: &str, born: &str) -> Self {
        Self {
            nhs_number: nhs.into(),
            family: family.into(),
            given: vec![given.into()],
            gender: gender.into(),
            birth_date: born.into(),
            address_lines: vec!["1 Trevelyan Square".into(), "Leeds".into()],
            postcode: "LS1 6AE".into(),
            gp_practice: Some("Y12345".into()),
            restricted: false,
            deceased: None,
        }
    }

    /// The Patient PDS answers with: restricted patients without their location.
    fn resource(&self) -> Value {
        let mut r = json!({
            "resourceType": "Patient",
            "id": self.nhs_number,
            "identifier": [{
                "system": NHS_NUMBER,
                "value": self.nhs_number,
                "extension": [{"url": VERIFICATION, "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus",
                    "version": "1.0.0", "code": "01", "display": "Number present and verified"}]}}],
            }],
            "meta": {"versionId": "2", "security": [if self.restricted {
                json!({"system": CONFIDENTIALITY, "code": "R", "display": "restricted"})
            } else {
                json!({"system": CONFIDENTIALITY, "code": "U", "display": "unrestricted"})
            }]},
            "name": [{"id": "1", "use": "usual", "period": {"start": "2020-01-01"},
                      "given": self.given, "family": self.family}],
            "gender": self.gender,
            "birthDate": self.birth_date,
        });
        if let Some(d) = &self.deceased {
            r["deceasedDateTime"] = json!(d);
        }
        // PDS removes location-sensitive fields from a restricted patient's answers.
        if !self.restricted {
            r["address"] = json!([{"id": "1", "use": "home", "period": {"start": "2020-01-01"},
                                   "line": self.address_lines, "postalCode": self.postcode}]);
            r["telecom"] = json!([{"id": "1", "period": {"start": "2020-01-01"},
                                   "system": "phone", "value": "01632960587", "use": "home"}]);
            if let Some(gp) = &self.gp_practice {
                r["generalPractitioner"] = json!([{"id": "1", "type": "Organization",
                    "identifier": {"system": ODS, "value": gp, "period": {"start": "2020-01-01"}}}]);
            }
        }
        r
    }
}

/// What the simulated PDS holds.
#[derive(Debug, Clone, Default)]
pub struct PdsData {
    pub people: Vec<PdsPerson>,
    /// Superseded NHS number → the one that replaced it.
    pub superseded: BTreeMap<String, String>,
    /// NHS numbers invalidated and not superseded.
    pub invalidated: Vec<String>,
}

impl PdsData {
    /// The demo's people (NHS numbers from the 999 test range): one unrestricted, one
    /// restricted, one deceased, one whose old number `9990000069` was superseded by
    /// `9990000077`, and two namesakes born the same day (a search for them is too many
    /// matches).
    pub fn demo() -> Self {
        let mut restricted =
            PdsPerson::new("9990000018", "Smythe", "Janet", "female", "2005-06-16");
        restricted.restricted = true;
        let mut deceased = PdsPerson::new("9990000026", "Garton", "Bill", "male", "1936-02-11");
        deceased.deceased = Some("2026-10-02T00:00:00+00:00".into());
        let mut twin_a = PdsPerson::new("9990000085", "Jones", "Jackie", "female", "1990-03-04");
        twin_a.postcode = "LS2 7UE".into();
        let mut twin_b = twin_a.clone();
        twin_b.nhs_number = "9990000093".into();
        Self {
            people: vec![
                PdsPerson::new("9990000034", "Attison", "Pauline", "female", "1962-09-30"),
                restricted,
                deceased,
                PdsPerson::new("9990000077", "Cuff", "Edith", "female", "1951-12-09"),
                twin_a,
                twin_b,
            ],
            superseded: [("9990000069".to_owned(), "9990000077".to_owned())].into(),
            invalidated: vec!["9990000042".into()],
        }
    }
}

struct Pds {
    data: PdsData,
    tokens: token::TokenEndpoint,
    reads: AtomicU64,
    searches: AtomicU64,
}

/// A running simulated PDS; stops when dropped.
#[derive(Debug)]
pub struct PdsHandle {
    addr: SocketAddr,
    state: Arc<Pds>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Pds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pds")
            .field("people", &self.data.people.len())
            .finish_non_exhaustive()
    }
}

impl PdsHandle {
    /// `http://127.0.0.1:port/personal-demographics/FHIR/R4`: the API's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.addr)
    }

    /// Reads answered so far (any status).
    pub fn reads(&self) -> u64 {
        self.state.reads.load(Ordering::Relaxed)
    }

    /// Searches answered so far (any status).
    pub fn searches(&self) -> u64 {
        self.state.searches.load(Ordering::Relaxed)
    }

    /// `http://127.0.0.1:port/oauth2/token`: the token endpoint, and the `aud` a JWT must name.
    pub fn token_url(&self) -> String {
        self.state.tokens.url.clone()
    }

    /// Token requests answered so far (any status), and of those the ones that got a token.
    pub fn token_requests(&self) -> (u64, u64) {
        (
            self.state.tokens.exchanges.load(Ordering::Relaxed),
            self.state.tokens.granted.load(Ordering::Relaxed),
        )
    }
}

impl Drop for PdsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `data` on `listener`, with the token endpoint for the application `access` names;
/// PDS accepts requests carrying `Authorization: Bearer` with a token it issued, unexpired.
/// An error when `access.jwks` holds no usable key.
pub async fn serve(
    listener: TcpListener,
    data: PdsData,
    access: PdsAccess,
) -> std::io::Result<PdsHandle> {
    let addr = listener.local_addr()?;
    let tokens = token::TokenEndpoint::new(access, format!("http://{addr}{TOKEN_PATH}"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let state = Arc::new(Pds {
        data,
        tokens,
        reads: AtomicU64::new(0),
        searches: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route(&format!("{BASE_PATH}/Patient"), get(search))
        .route(&format!("{BASE_PATH}/Patient/{{id}}"), get(read))
        .route(TOKEN_PATH, post(issue_token))
        .with_state(Arc::clone(&state));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "PDS simulator stopped");
        }
    });
    Ok(PdsHandle { addr, state, task })
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// An OperationOutcome as PDS sends it: the FHIR issue type and the Spine error code.
fn outcome(status: StatusCode, issue: &str, code: &str, display: &str, diag: &str) -> Response {
    let mut i = json!({
        "severity": "error",
        "code": issue,
        "details": {"coding": [{"system": SPINE_CODES, "version": "1", "code": code, "display": display}]},
    });
    if !diag.is_empty() {
        i["diagnostics"] = json!(diag);
    }
    fhir(
        status,
        &json!({"resourceType": "OperationOutcome", "issue": [i]}),
    )
}

async fn issue_token(State(pds): State<Arc<Pds>>, headers: HeaderMap, body: Bytes) -> Response {
    pds.tokens.answer(&headers, &body)
}

/// The checks every request passes first: an access token the token endpoint issued and that
/// has not expired, then `X-Request-ID`.
fn admit(pds: &Pds, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| pds.tokens.admits(t)) {
        return Some(outcome(
            StatusCode::UNAUTHORIZED,
            "forbidden",
            "ACCESS_DENIED",
            "Access Denied - Unauthorised",
            "Invalid Access Token",
        ));
    }
    if headers.get("x-request-id").is_none() {
        return Some(outcome(
            StatusCode::BAD_REQUEST,
            "value",
            "MISSING_VALUE",
            "Required value is missing",
            "Invalid request with error - X-Request-ID header must be supplied to access this resource",
        ));
    }
    None
}

/// The modulus 11 check an NHS number passes.
fn valid_nhs(s: &str) -> bool {
    mcr_domain::NhsNumber::parse(s).is_ok()
}

async fn read(State(pds): State<Arc<Pds>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    pds.reads.fetch_add(1, Ordering::Relaxed);
    if let Some(refused) = admit(&pds, &headers) {
        return refused;
    }
    if !valid_nhs(&id) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "value",
            "INVALID_RESOURCE_ID",
            "Resource Id is invalid",
            "",
        );
    }
    let current = pds.data.superseded.get(&id).unwrap_or(&id);
    if pds.data.invalidated.contains(current) {
        return outcome(
            StatusCode::NOT_FOUND,
            "processing",
            "INVALIDATED_RESOURCE",
            "Resource that has been marked as invalid was requested - invalid resources cannot be retrieved",
            "",
        );
    }
    match pds.data.people.iter().find(|p| &p.nhs_number == current) {
        Some(p) => fhir(StatusCode::OK, &p.resource()),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "RESOURCE_NOT_FOUND",
            "Resource not found",
            "",
        ),
    }
}

/// The search parameters the specification lists.
const PARAMS: [&str; 14] = [
    "_fuzzy-match",
    "_exact-match",
    "_history",
    "_max-results",
    "family",
    "given",
    "gender",
    "birthdate",
    "death-date",
    "address-postalcode",
    "address-postcode",
    "general-practitioner",
    "email",
    "phone",
];

/// How well a held name agrees with a searched one: 1 the same, 0.9 a wildcard's prefix
/// (non-fuzzy), 0.5 the same Soundex (fuzzy), 0 not at all.
fn agree_name(held: &str, asked: &str, fuzzy: bool) -> f64 {
    let (held, asked) = (held.to_lowercase(), asked.to_lowercase());
    if held == asked {
        1.0
    } else if let Some(prefix) = asked.strip_suffix('*') {
        if !fuzzy && held.starts_with(prefix) {
            0.9
        } else {
            0.0
        }
    } else if fuzzy && soundex(&held) == soundex(&asked) {
        0.5
    } else {
        0.0
    }
}

/// The same for postcodes: a wildcard's prefix (non-fuzzy) or the same district (fuzzy) is
/// partial.
fn agree_postcode(held: &str, asked: &str, fuzzy: bool) -> f64 {
    let norm = |s: &str| s.to_uppercase().replace(' ', "");
    let (h, a) = (norm(held), norm(asked));
    let district = |s: &str| s.get(..s.len().saturating_sub(3)).unwrap_or("").to_owned();
    if h == a {
        1.0
    } else if let Some(prefix) = a.strip_suffix('*') {
        if !fuzzy && h.starts_with(prefix) {
            0.9
        } else {
            0.0
        }
    } else if fuzzy && !district(&h).is_empty() && district(&h) == district(&a) {
        0.5
    } else {
        0.0
    }
}

/// The classic four-character Soundex code, as PDS's fuzzy search uses.
fn soundex(s: &str) -> String {
    let code = |c: char| match c {
        'b' | 'f' | 'p' | 'v' => Some('1'),
        'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => Some('2'),
        'd' | 't' => Some('3'),
        'l' => Some('4'),
        'm' | 'n' => Some('5'),
        'r' => Some('6'),
        _ => None,
    };
    let letters: Vec<char> = s
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let Some(first) = letters.first() else {
        return String::new();
    };
    let mut out = first.to_ascii_uppercase().to_string();
    let mut last = code(*first);
    for c in &letters[1..] {
        let d = code(*c);
        if d.is_some() && d != last {
            out.extend(d);
        }
        if !matches!(c, 'h' | 'w') {
            last = d;
        }
        if out.len() == 4 {
            break;
        }
    }
    while out.len() < 4 {
        out.push('0');
    }
    out
}

fn invalid(code: &str, display: &str, diag: &str) -> Response {
    outcome(StatusCode::BAD_REQUEST, "value", code, display, diag)
}

async fn search(
    State(pds): State<Arc<Pds>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    pds.searches.fetch_add(1, Ordering::Relaxed);
    if let Some(refused) = admit(&pds, &headers) {
        return refused;
    }
    if params.is_empty() {
        return invalid(
            "UNSUPPORTED_SERVICE",
            "Unsupported Service",
            "No search parameters provided",
        );
    }
    if let Some((name, _)) = params.iter().find(|(k, _)| !PARAMS.contains(&k.as_str())) {
        return invalid(
            "ADDITIONAL_PROPERTIES",
            "Additional properties are not allowed",
            &format!("Invalid request with error - Additional properties are not allowed ('{name}' was unexpected)"),
        );
    }
    let one = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| one(k) == Some("true");
    let (fuzzy, exact) = (flag("_fuzzy-match"), flag("_exact-match"));
    if let Some(m) = one("_max-results") {
        match m.parse::<u32>() {
            Ok(1) => {}
            Ok(2..=50) => return outcome(
                StatusCode::FORBIDDEN,
                "value",
                "INVALID_VALUE",
                "Provided value is invalid",
                "Invalid value - '_max-results' must be 1 in application-restricted access mode",
            ),
            _ => {
                return invalid(
                    "INVALID_VALUE",
                    "Provided value is invalid",
                    &format!("Invalid value - '{m}' in field '_max-results'"),
                )
            }
        }
    }
    if let Some(g) = one("gender") {
        if !matches!(g, "male" | "female" | "other" | "unknown") {
            return invalid(
                "INVALID_VALUE",
                "Provided value is invalid",
                &format!("Invalid value - '{g}' in field 'gender'"),
            );
        }
    }
    let mut born: Option<String> = None;
    for (_, v) in params.iter().filter(|(k, _)| k == "birthdate") {
        let date = v.strip_prefix("eq").unwrap_or(v);
        if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() || born.is_some() {
            return invalid(
                "INVALID_SEARCH_DATA",
                "Search data is invalid",
                &format!("Invalid value - '{v}' in field 'birthdate'"),
            );
        }
        born = Some(date.to_owned());
    }
    let family = one("family");
    let given: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "given")
        .map(|(_, v)| v.as_str())
        .collect();
    let postcode = one("address-postalcode").or(one("address-postcode"));
    let gender = one("gender");
    // The specification's minimum combinations: family and birth date for a non-fuzzy search;
    // for a fuzzy one, given + family + birth date, or a name with birth date, gender and
    // postcode.
    let enough = match (fuzzy, born.is_some()) {
        (_, false) => false,
        (false, true) => family.is_some(),
        (true, true) => {
            (family.is_some() && !given.is_empty())
                || ((family.is_some() || !given.is_empty())
                    && gender.is_some()
                    && postcode.is_some())
        }
    };
    if !enough {
        return invalid(
            "INVALID_SEARCH_DATA",
            "Search data is invalid",
            "Not enough search parameters were provided to be able to make a search",
        );
    }
    let born = born.unwrap_or_default();
    let mut found: Vec<(f64, &PdsPerson)> = Vec::new();
    for p in &pds.data.people {
        if p.birth_date != born {
            continue;
        }
        // A search naming a postcode or a practice never finds a restricted patient.
        if p.restricted && (postcode.is_some() || one("general-practitioner").is_some()) {
            continue;
        }
        let mut scores = vec![1.0];
        if let Some(f) = family {
            scores.push(agree_name(&p.family, f, fuzzy));
        }
        for g in &given {
            let best = p
                .given
                .iter()
                .map(|h| agree_name(h, g, fuzzy))
                .fold(0.0, f64::max);
            scores.push(best);
        }
        if let Some(g) = gender {
            scores.push(if p.gender == g { 1.0 } else { 0.0 });
        }
        if let Some(pc) = postcode {
            scores.push(agree_postcode(&p.postcode, pc, fuzzy));
        }
        let zeros = scores.iter().filter(|s| **s == 0.0).count();
        // A non-fuzzy search matches on every value; a fuzzy one forgives one disagreement.
        if zeros > usize::from(fuzzy) {
            continue;
        }
        let score = scores.iter().sum::<f64>() / scores.len() as f64;
        let score = (score * 100.0).round() / 100.0;
        if exact && score < 1.0 {
            continue;
        }
        found.push((score, p));
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    if found.len() > 1 {
        // Application-restricted access: a unique match or nothing.
        return fhir(
            StatusCode::OK,
            &json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "multiple-matches",
                "details": {"coding": [{"system": SPINE_CODES, "version": "1",
                    "code": "TOO_MANY_MATCHES", "display": "Too Many Matches"}]}}]}),
        );
    }
    let entries: Vec<Value> = found
        .iter()
        .map(|(score, p)| {
            json!({
                "fullUrl": format!("https://api.service.nhs.uk{BASE_PATH}/Patient/{}", p.nhs_number),
                "search": {"score": score},
                "resource": p.resource(),
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": mcr_domain::Clock::now(&mcr_domain::SystemClock).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "total": entries.len(),
    });
    if !entries.is_empty() {
        bundle["entry"] = entries.into();
    }
    fhir(StatusCode::OK, &bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_codes_as_the_classic_algorithm() {
        assert_eq!(soundex("Robert"), "R163");
        assert_eq!(soundex("Rupert"), "R163");
        assert_eq!(soundex("Ashcraft"), "A261");
        assert_eq!(soundex("Smith"), soundex("Smythe"));
        assert_eq!(soundex("Tymczak"), "T522");
    }

    #[test]
    fn demo_numbers_pass_the_check_digit() {
        let d = PdsData::demo();
        for n in d
            .people
            .iter()
            .map(|p| &p.nhs_number)
            .chain(d.superseded.keys())
            .chain(&d.invalidated)
        {
            assert!(valid_nhs(n), "{n}");
        }
    }
}
