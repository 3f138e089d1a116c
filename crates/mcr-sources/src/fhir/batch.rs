//! A `batch` Bundle of reads and searches taken apart (at most [`MAX_BATCH_ENTRIES`]), and
//! the `batch-response` Bundle written from their answers.

use super::{bad, invalid, outcome};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

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
