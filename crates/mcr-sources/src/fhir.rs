//! The FHIR side of a source: searches, reads, paging, CapabilityStatement, OperationOutcome.
//! Plain functions over the slice; no I/O.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, FixedOffset, NaiveDate};
use mcr_domain::demographics::normalise_name;
use mcr_synth::{SourcePatient, SourceSlice};
use serde_json::{json, Value};
use std::net::SocketAddr;

pub const FHIR_JSON: &str = "application/fhir+json";
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

pub(crate) fn raw(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    raw(status, Body::from(value.to_string()))
}

pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    json(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
        }),
    )
}

/// The base URL the client used (Host header), or the listener's address.
pub(crate) fn base_url(scheme: &str, addr: SocketAddr, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() < 256
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
    match host {
        Some(h) => format!("{scheme}://{h}"),
        None => format!("{scheme}://{addr}"),
    }
}

pub(crate) fn capability_statement(slice: &SourceSlice, base: &str) -> Value {
    let resources: Vec<Value> = slice
        .resource_types
        .iter()
        .map(|t| {
            let params = if *t == "Patient" {
                json!([
                    { "name": "identifier", "type": "token", "documentation": "system|value, e.g. https://fhir.nhs.uk/Id/nhs-number|9990000018" },
                    { "name": "family", "type": "string", "documentation": "starts with, ignoring case, spaces and punctuation" },
                    { "name": "given", "type": "string", "documentation": "starts with, ignoring case, spaces and punctuation" },
                    { "name": "birthdate", "type": "date", "documentation": "exact day, YYYY-MM-DD" },
                    { "name": "_lastUpdated", "type": "date", "documentation": "gt, ge, lt, le or eq an instant or a day" },
                ])
            } else {
                json!([
                    { "name": "patient", "type": "reference", "definition": "#patient", "documentation": "required: {id}, Patient/{id} or this server's absolute URL for it; or, with :identifier, an NHS number" },
                    { "name": "subject", "type": "reference", "documentation": "alternative to patient" },
                ])
            };
            json!({
                "type": t,
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": params,
            })
        })
        .collect();
    // The patient parameter as this server implements it: with the `:identifier` modifier.
    let clinical_types: Vec<&str> = slice
        .resource_types
        .iter()
        .copied()
        .filter(|t| *t != "Patient")
        .collect();
    let patient_param = json!({
        "resourceType": "SearchParameter",
        "id": "patient",
        "url": format!("{base}/SearchParameter/patient"),
        "name": "patient",
        "status": "active",
        "description": "The patient an item is about: by id, by reference, or (with :identifier) by NHS number.",
        "code": "patient",
        "base": clinical_types,
        "type": "reference",
        "target": ["Patient"],
        "modifier": ["identifier"],
    });
    json!({
        "resourceType": "CapabilityStatement",
        "contained": [patient_param],
        "status": "active",
        "date": slice.today().format("%Y-%m-%d").to_string(),
        "publisher": slice.organisation.name,
        "kind": "instance",
        "software": { "name": "My Care Record simulated source", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": format!("{} ({}), source `{}`", slice.organisation.name, slice.organisation.code, slice.id),
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "batch", "documentation": "GET entries only: searches and reads, at most 100" }],
            "searchParam": [
                { "name": "_count", "type": "number", "documentation": "page size, default 50, at most 1000" },
            ],
        }],
    })
}

pub(crate) fn read(slice: &SourceSlice, resource_type: &str, id: &str) -> Response {
    if !slice.holds_type(resource_type) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "resource type not held by this server",
        );
    }
    let found = if resource_type == "Patient" {
        slice.patient(id).map(|p| p.resource.clone())
    } else {
        // Resource ids are `{patient local id}-{abbreviation}{n}`.
        id.rsplit_once('-').and_then(|(local, _)| {
            slice
                .resources(local, resource_type)
                .into_iter()
                .find(|r| r["id"] == id)
        })
    };
    match found {
        Some(r) => json(StatusCode::OK, &r),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "no resource with that id",
        ),
    }
}

type Params = [(String, String)];

/// A search the server will not run; becomes a 400 OperationOutcome.
struct Bad(&'static str);

fn bad(msg: &'static str) -> Bad {
    Bad(msg)
}

fn invalid(Bad(msg): Bad) -> Response {
    outcome(StatusCode::BAD_REQUEST, "invalid", msg)
}

pub(crate) fn search(
    slice: &SourceSlice,
    base: &str,
    resource_type: &str,
    params: &Params,
    feeds: &FeedCache,
) -> Response {
    if !slice.holds_type(resource_type) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "resource type not held by this server",
        );
    }
    let (count, offset) = match paging(params) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    // Only the page asked for is cloned: an index sync walks every patient.
    let (total, page): (usize, Vec<Value>) = if resource_type == "Patient" {
        match patient_matches(slice, params) {
            Ok(m) => (
                m.len(),
                m.into_iter()
                    .skip(offset)
                    .take(count)
                    .map(|p| p.resource.clone())
                    .collect(),
            ),
            Err(e) => return invalid(e),
        }
    } else if is_care_event_feed(resource_type, params) {
        match care_event_feed(slice, resource_type, params, feeds) {
            Ok(all) => (
                all.len(),
                all.iter().skip(offset).take(count).cloned().collect(),
            ),
            Err(e) => return invalid(e),
        }
    } else {
        let mut patient = None;
        for (k, v) in params {
            match k.as_str() {
                "patient" | "subject" => {
                    let id = v.rsplit_once("Patient/").map_or(v.as_str(), |(_, id)| id);
                    if id.is_empty() {
                        return invalid(bad("patient must name a patient id"));
                    }
                    if patient.is_some_and(|p| p != id) {
                        return invalid(bad("only one patient per search"));
                    }
                    patient = Some(id);
                }
                // A logical reference's search (`patient:identifier=system|value`): the patient
                // this source holds under that NHS number, if any.
                "patient:identifier" | "subject:identifier" => {
                    let Some(nhs) = v
                        .split_once('|')
                        .filter(|(system, _)| *system == mcr_domain::NhsNumber::SYSTEM)
                        .map(|(_, nhs)| nhs)
                    else {
                        return invalid(bad(
                            "patient:identifier takes an NHS number: https://fhir.nhs.uk/Id/nhs-number|{number}",
                        ));
                    };
                    // No one held under that number: a search that finds nothing.
                    let id = slice
                        .patients()
                        .iter()
                        .find(|p| p.nhs_number.as_ref().is_some_and(|n| n.as_str() == nhs))
                        .map_or("", |p| p.local_id.as_str());
                    if patient.is_some_and(|p| p != id) {
                        return invalid(bad("only one patient per search"));
                    }
                    patient = Some(id);
                }
                "_count" | "_offset" | "_format" => {}
                _ => return invalid(bad("unsupported search parameter")),
            }
        }
        let Some(patient) = patient else {
            return invalid(bad("this server requires a patient (or subject) parameter"));
        };
        let all = slice.resources(patient, resource_type);
        (
            all.len(),
            all.into_iter().skip(offset).take(count).collect(),
        )
    };
    json(
        StatusCode::OK,
        &bundle(base, resource_type, params, total, page, count, offset),
    )
}

/// Care-event types a system may ask for across every patient, by date (the gateway's index
/// sync reads their metadata).
const CARE_EVENT_TYPES: [&str; 5] = [
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "Appointment",
    "CareTeam",
];

pub(crate) fn is_care_event_feed(resource_type: &str, params: &Params) -> bool {
    CARE_EVENT_TYPES.contains(&resource_type)
        && params.iter().any(|(k, _)| k == "date")
        && !params.iter().any(|(k, _)| k == "patient" || k == "subject")
}

/// Care-event feeds already generated, by type and day: every page of one feed is cut from
/// the same list, generated once (the records never change), not the region again per page.
#[derive(Default)]
pub(crate) struct FeedCache(std::sync::Mutex<std::collections::HashMap<FeedKey, Feed>>);

/// A feed's resource type and first day.
type FeedKey = (String, NaiveDate);
type Feed = std::sync::Arc<Vec<Value>>;

/// Every patient's `resource_type` whose period reaches the `date=geYYYY-MM-DD` day or later
/// (open ones included), in patient order.
fn care_event_feed(
    slice: &SourceSlice,
    resource_type: &str,
    params: &Params,
    feeds: &FeedCache,
) -> Result<std::sync::Arc<Vec<Value>>, Bad> {
    let mut from = None;
    for (k, v) in params {
        match k.as_str() {
            "date" => {
                let day = v
                    .strip_prefix("ge")
                    .ok_or_else(|| bad("date must be geYYYY-MM-DD"))?;
                from = Some(
                    NaiveDate::parse_from_str(day, "%Y-%m-%d")
                        .map_err(|_| bad("date must be geYYYY-MM-DD"))?,
                );
            }
            "_count" | "_offset" | "_format" => {}
            _ => return Err(bad("unsupported search parameter")),
        }
    }
    let from = from.ok_or_else(|| bad("date must be geYYYY-MM-DD"))?;
    let reaches = |r: &Value| {
        let end = r
            .get("period")
            .and_then(|p| p.get("end"))
            .and_then(Value::as_str);
        match end {
            None => true,
            Some(e) => {
                e.get(..10)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    >= Some(from)
            }
        }
    };
    let mut cache = feeds
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let list = cache
        .entry((resource_type.to_owned(), from))
        .or_insert_with(|| {
            std::sync::Arc::new(
                slice
                    .patients()
                    .iter()
                    .flat_map(|p| slice.resources(&p.local_id, resource_type))
                    .filter(reaches)
                    .collect(),
            )
        });
    Ok(std::sync::Arc::clone(list))
}

fn paging(params: &Params) -> Result<(usize, usize), Bad> {
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    for (k, v) in params {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| bad("_count must be a whole number"))?
                    .min(MAX_COUNT);
            }
            "_offset" => {
                offset = v
                    .parse::<usize>()
                    .map_err(|_| bad("_offset must be a whole number"))?;
            }
            _ => {}
        }
    }
    Ok((count, offset))
}

#[derive(Clone, Copy)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    // A `+` in an unencoded query string arrives as a space.
    let s = s.replace(' ', "+");
    DateTime::parse_from_rfc3339(&s).ok().or_else(|| {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| dt.and_utc().fixed_offset())
    })
}

fn patient_matches<'a>(
    slice: &'a SourceSlice,
    params: &Params,
) -> Result<Vec<&'a SourcePatient>, Bad> {
    let mut identifiers: Vec<(Option<&str>, &str)> = Vec::new();
    let mut family = None;
    let mut given = None;
    let mut birthdate = None;
    let mut updated: Vec<(Cmp, DateTime<FixedOffset>)> = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "identifier" => {
                let (system, value) = match v.split_once('|') {
                    Some((s, v)) => ((!s.is_empty()).then_some(s), v),
                    None => (None, v.as_str()),
                };
                if value.is_empty() {
                    return Err(bad("identifier needs a value"));
                }
                identifiers.push((system, value));
            }
            "family" | "given" => {
                let n = normalise_name(v);
                if n.is_empty() {
                    return Err(bad("a name search needs letters"));
                }
                if k == "family" {
                    family = Some(n);
                } else {
                    given = Some(n);
                }
            }
            "birthdate" => {
                let day = v.strip_prefix("eq").unwrap_or(v);
                let d = NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|_| bad("birthdate must be an exact day, YYYY-MM-DD"))?;
                birthdate = Some(d.format("%Y-%m-%d").to_string());
            }
            "_lastUpdated" => {
                let (cmp, rest) = match v.get(..2) {
                    Some("gt") => (Cmp::Gt, &v[2..]),
                    Some("ge") => (Cmp::Ge, &v[2..]),
                    Some("lt") => (Cmp::Lt, &v[2..]),
                    Some("le") => (Cmp::Le, &v[2..]),
                    Some("eq") => (Cmp::Eq, &v[2..]),
                    _ => (Cmp::Eq, v.as_str()),
                };
                let at = parse_instant(rest)
                    .ok_or_else(|| bad("_lastUpdated must be an instant (RFC 3339) or a day"))?;
                updated.push((cmp, at));
            }
            "_count" | "_offset" | "_format" => {}
            _ => return Err(bad("unsupported search parameter")),
        }
    }
    let out = slice
        .patients()
        .iter()
        .filter(|p| {
            let r = &p.resource;
            let ids = r["identifier"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let id_ok = identifiers.iter().all(|(sys, val)| {
                ids.iter().any(|i| {
                    i["value"].as_str() == Some(val)
                        && sys.is_none_or(|s| i["system"].as_str() == Some(s))
                })
            });
            let name = &r["name"][0];
            let family_ok = family.as_ref().is_none_or(|f| {
                name["family"]
                    .as_str()
                    .is_some_and(|x| normalise_name(x).starts_with(f.as_str()))
            });
            let given_ok = given.as_ref().is_none_or(|g| {
                name["given"].as_array().is_some_and(|gs| {
                    gs.iter().any(|x| {
                        x.as_str()
                            .is_some_and(|x| normalise_name(x).starts_with(g.as_str()))
                    })
                })
            });
            let birth_ok = birthdate
                .as_ref()
                .is_none_or(|b| r["birthDate"].as_str() == Some(b.as_str()));
            let updated_ok = updated.is_empty()
                || parse_instant(&p.last_updated).is_some_and(|at| {
                    updated.iter().all(|(cmp, t)| match cmp {
                        Cmp::Gt => at > *t,
                        Cmp::Ge => at >= *t,
                        Cmp::Lt => at < *t,
                        Cmp::Le => at <= *t,
                        Cmp::Eq => at == *t,
                    })
                });
            id_ok && family_ok && given_ok && birth_ok && updated_ok
        })
        .collect();
    Ok(out)
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn page_url(base: &str, resource_type: &str, params: &Params, offset: Option<usize>) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "_offset")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if let Some(o) = offset.filter(|o| *o > 0) {
        parts.push(format!("_offset={o}"));
    }
    if parts.is_empty() {
        format!("{base}/{resource_type}")
    } else {
        format!("{base}/{resource_type}?{}", parts.join("&"))
    }
}

fn bundle(
    base: &str,
    resource_type: &str,
    params: &Params,
    total: usize,
    page: Vec<Value>,
    count: usize,
    offset: usize,
) -> Value {
    let entries: Vec<Value> = page
        .into_iter()
        .map(|r| {
            let full = format!(
                "{base}/{}/{}",
                r["resourceType"].as_str().unwrap_or(resource_type),
                r["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": full, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut links = vec![
        json!({ "relation": "self", "url": page_url(base, resource_type, params, Some(offset)) }),
    ];
    if count > 0 && offset.saturating_add(count) < total {
        links.push(json!({ "relation": "next", "url": page_url(base, resource_type, params, Some(offset + count)) }));
    }
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    })
}

/// The most entries one batch may hold.
pub(crate) const MAX_BATCH_ENTRIES: usize = 100;

/// One entry of a batch, as this server will answer it.
pub(crate) enum BatchGet {
    Search {
        resource_type: String,
        params: Vec<(String, String)>,
    },
    Read {
        resource_type: String,
        id: String,
    },
    /// Answered with this (an OperationOutcome) in the entry's place.
    Refused(Response),
}

/// The entries of a `batch` Bundle, in order; a body that is not one is refused whole (400).
pub(crate) fn batch_requests(body: &[u8]) -> Result<Vec<BatchGet>, Box<Response>> {
    let refuse = |code: &str, msg: &str| Box::new(outcome(StatusCode::BAD_REQUEST, code, msg));
    let Ok(bundle) = serde_json::from_slice::<Value>(body) else {
        return Err(refuse("invalid", "the body is not JSON"));
    };
    if bundle["resourceType"] != "Bundle" {
        return Err(refuse("invalid", "the body must be a Bundle"));
    }
    if bundle["type"] != "batch" {
        return Err(refuse(
            "not-supported",
            "this server accepts a Bundle of type batch only",
        ));
    }
    let entries = match &bundle["entry"] {
        Value::Null => &[][..],
        Value::Array(entries) => entries.as_slice(),
        _ => return Err(refuse("invalid", "Bundle.entry must be a list")),
    };
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(refuse("too-costly", "at most 100 entries per batch"));
    }
    let here = url::Url::parse("http://batch.invalid/").map_err(|_| {
        Box::new(outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "no base to read entries against",
        ))
    })?;
    Ok(entries
        .iter()
        .map(|entry| {
            let request = &entry["request"];
            if request["method"] != "GET" {
                return BatchGet::Refused(outcome(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "not-supported",
                    "batch entries must be GET",
                ));
            }
            let url = request["url"]
                .as_str()
                .and_then(|u| here.join(u.trim_start_matches('/')).ok())
                .filter(|u| u.host_str() == Some("batch.invalid"));
            let Some(url) = url else {
                return BatchGet::Refused(invalid(bad(
                    "entry.request.url must be a URL relative to this server",
                )));
            };
            let segments: Vec<&str> = url
                .path_segments()
                .map(Iterator::collect)
                .unwrap_or_default();
            match segments.as_slice() {
                [t] if !t.is_empty() => BatchGet::Search {
                    resource_type: (*t).to_owned(),
                    params: url.query_pairs().into_owned().collect(),
                },
                [t, id] if url.query().is_none() => BatchGet::Read {
                    resource_type: (*t).to_owned(),
                    id: (*id).to_owned(),
                },
                _ => BatchGet::Refused(outcome(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "no such endpoint on this server",
                )),
            }
        })
        .collect())
}

/// A `batch-response` Bundle of `entries` (each answer's status and body, in order): a success
/// as the entry's resource, a failure as its `response.outcome`.
pub(crate) fn batch_response(entries: &[(StatusCode, bytes::Bytes)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(_, b)| b.len() + 64).sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(br#"{"resourceType":"Bundle","type":"batch-response","entry":["#);
    for (i, (status, body)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let line = Value::String(format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ))
        .to_string();
        if status.is_success() {
            out.extend_from_slice(br#"{"resource":"#);
            out.extend_from_slice(body);
            out.extend_from_slice(br#","response":{"status":"#);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"}}");
        } else {
            out.extend_from_slice(br#"{"response":{"status":"#);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(br#","outcome":"#);
            out.extend_from_slice(body);
            out.extend_from_slice(b"}}");
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// A search's answer with each resource's patient reference written as `style` says
/// (see [`crate::References`]). Anything but a 200 Bundle is passed on as it is.
pub(crate) async fn rewrite_references(
    slice: &SourceSlice,
    base: &str,
    answer: Response,
    style: crate::References,
) -> Response {
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let Ok(bytes) = axum::body::to_bytes(answer.into_body(), usize::MAX).await else {
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the answer could not be written",
        );
    };
    let Ok(mut bundle) = serde_json::from_slice::<Value>(&bytes) else {
        return raw(StatusCode::OK, Body::from(bytes));
    };
    for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
        let r = &mut entry["resource"];
        let field = if r.get("subject").is_some() {
            "subject"
        } else {
            "patient"
        };
        let Some(local) = r[field]["reference"]
            .as_str()
            .and_then(|x| x.strip_prefix("Patient/"))
            .map(str::to_owned)
        else {
            continue;
        };
        let nhs = slice
            .patient(&local)
            .and_then(|p| p.nhs_number.as_ref())
            .map(|n| n.as_str().to_owned());
        let identifier = |n: &str| json!({"system": mcr_domain::NhsNumber::SYSTEM, "value": n});
        r[field] = match (style, nhs.as_deref()) {
            (crate::References::Relative, _) => continue,
            (crate::References::Absolute, _) => {
                json!({"reference": format!("{base}/Patient/{local}")})
            }
            (crate::References::OtherServer, _) => {
                json!({"reference": format!("https://elsewhere.example/fhir/Patient/{local}")})
            }
            (crate::References::Identifier, Some(n)) => json!({"identifier": identifier(n)}),
            (crate::References::Contained, Some(n)) => {
                r["contained"] =
                    json!([{"resourceType": "Patient", "id": "p", "identifier": [identifier(n)]}]);
                json!({"reference": "#p"})
            }
            // Without an NHS number there is nothing to write but the id.
            (crate::References::Identifier | crate::References::Contained, None) => continue,
        };
    }
    match serde_json::to_vec(&bundle) {
        Ok(body) => raw(StatusCode::OK, Body::from(body)),
        Err(_) => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the answer could not be written",
        ),
    }
}
