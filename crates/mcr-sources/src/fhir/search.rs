//! A source's searches (`GET /{type}?…`): the patient search's parameters, paging, and the
//! `searchset` Bundle with its `self` and `next` links.

use super::feed::care_event_feed;
use super::{bad, invalid, is_care_event_feed, outcome, Bad, FeedCache, Params};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, FixedOffset, NaiveDate};
use mcr_domain::demographics::normalise_name;
use mcr_synth::{SourcePatient, SourceSlice};
use serde_json::{json, Value};

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

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
    super::json(
        StatusCode::OK,
        &bundle(base, resource_type, params, total, page, count, offset),
    )
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
