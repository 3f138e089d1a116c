//! Opening one document of a patient's record: the `DocumentReference` is read again from its
//! source and checked as a record view checks it (tied to this patient, of a data class the
//! grant covers, shared by the source, not withheld), then the `Binary` its attachment names
//! is asked for and its bytes handed over as they arrive, within a size cap and only if they
//! are what the reference says they are.
//!
//! Nothing here is written anywhere: the bytes pass through memory a chunk at a time
//! ([`DocumentBody`]). A caller can name only a `DocumentReference` id at a source; the
//! `Binary` asked for is the one that reference's attachment names, on the same server.

use crate::merge::Digested;
use crate::merge::{Digest, Received};
use bytes::Bytes;
use mcr_domain::FailureReason;
use serde_json::Value;
use url::Url;

/// The largest document opened by default (20 MiB).
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 20 * 1024 * 1024;

/// Why a document is not opened. Each is a refusal the clinician is told of, and audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentRefusal {
    #[error("the source holds no such document")]
    NotFound,
    /// The reference exists but is not part of this patient's record as this user may see
    /// it: `why` is `another-patient`, `not-tied`, `not-granted`, `withheld` or `not-a-document`.
    #[error("the document is not part of this patient's record as you may see it")]
    NotInRecord { why: &'static str },
    #[error("the document reference names no attachment the source can send")]
    NoAttachment,
    #[error("the document's address points away from its source")]
    Elsewhere,
    #[error("the document is larger than the {limit_bytes}-byte limit for opening documents")]
    TooLarge { limit_bytes: u64, size: Option<u64> },
    #[error("the source says the document is {declared} but sent {arrived}")]
    TypeMismatch { declared: String, arrived: String },
    #[error("the source could not send it: {}", .0.describe())]
    Source(FailureReason),
    #[error("this source does not offer documents")]
    Unsupported,
}

impl DocumentRefusal {
    /// A short stable code for the audit trail and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::NotInRecord { why } => why,
            Self::NoAttachment => "no-attachment",
            Self::Elsewhere => "elsewhere",
            Self::TooLarge { .. } => "too-large",
            Self::TypeMismatch { .. } => "type-mismatch",
            Self::Source(_) => "source-failed",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A document being opened: what it is, and its bytes still arriving.
#[derive(Debug)]
pub struct OpenedDocument {
    /// The media type the reference declared and the bytes agreed with (lower case, no
    /// parameters), e.g. `application/pdf`.
    pub content_type: String,
    /// The reference's title or description, for a file name and a heading.
    pub title: Option<String>,
    /// The length the source announced, if it did.
    pub length: Option<u64>,
    pub body: DocumentBody,
}

/// A document's bytes: those already read (to check their type), then the rest of the
/// source's answer, a chunk at a time, cut off with an error past the cap.
pub struct DocumentBody {
    first: Bytes,
    rest: Option<reqwest::Response>,
    cap: u64,
}

impl std::fmt::Debug for DocumentBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DocumentBody({} bytes read)", self.first.len())
    }
}

/// A document cut short while it was being passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentCut {
    #[error("the document passed the {limit_bytes}-byte limit and was cut off")]
    TooLarge { limit_bytes: u64 },
    #[error("the source's answer was cut off")]
    Transport,
}

impl DocumentBody {
    fn whole(bytes: Vec<u8>, cap: u64) -> Self {
        Self {
            first: Bytes::from(bytes),
            rest: None,
            cap,
        }
    }

    /// The bytes as a stream: the first chunk, then the rest as it arrives; an error (and the
    /// end) once more than the cap has come.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<Bytes, DocumentCut>> + Send + 'static {
        let cap = self.cap;
        let state = (Some(self.first), self.rest, 0u64, false);
        futures::stream::unfold(state, move |(first, rest, sent, done)| async move {
            if done {
                return None;
            }
            if let Some(first) = first.filter(|b| !b.is_empty()) {
                let sent = sent + first.len() as u64;
                return Some((Ok(first), (None, rest, sent, false)));
            }
            let mut rest = rest?;
            match rest.chunk().await {
                Ok(Some(chunk)) => {
                    let sent = sent + chunk.len() as u64;
                    if sent > cap {
                        return Some((
                            Err(DocumentCut::TooLarge { limit_bytes: cap }),
                            (None, None, sent, true),
                        ));
                    }
                    Some((Ok(chunk), (None, Some(rest), sent, false)))
                }
                Ok(None) => None,
                Err(_) => Some((Err(DocumentCut::Transport), (None, None, sent, true))),
            }
        })
    }

    /// Every byte, in memory (for a document shown as text, and for tests).
    pub async fn collect(self) -> Result<Vec<u8>, DocumentCut> {
        use futures::StreamExt as _;
        let mut out = Vec::new();
        let mut s = std::pin::pin!(self.into_stream());
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// What a checked `DocumentReference` says about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// As written (relative or absolute).
    pub url: String,
    /// The declared media type, lower case, without parameters.
    pub content_type: String,
    pub title: Option<String>,
}

/// The media type of a `Content-Type` value: lower case, parameters dropped.
pub fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Check a `DocumentReference` a source sent (`raw`, asked for by `id`) as a record view
/// would, with `digest`, and read its attachment.
pub fn check_reference(
    raw: &serde_json::value::RawValue,
    id: &str,
    digest: &Digest<'_>,
) -> Result<Attachment, DocumentRefusal> {
    let doc = mcr_fhir::Doc::parse(raw.get()).map_err(|_| {
        DocumentRefusal::Source(FailureReason::Malformed {
            detail: "the document reference could not be read".into(),
        })
    })?;
    if mcr_fhir::resource_type(&doc) != Some("DocumentReference")
        || mcr_fhir::resource_id(&doc) != Some(id)
    {
        return Err(DocumentRefusal::Source(FailureReason::Malformed {
            detail: "a DocumentReference read returned something else".into(),
        }));
    }
    match digest(Received { doc: &doc, raw }) {
        Digested::Item(_) => {}
        Digested::AnotherPatient => {
            return Err(DocumentRefusal::NotInRecord {
                why: "another-patient",
            })
        }
        Digested::Untied => return Err(DocumentRefusal::NotInRecord { why: "not-tied" }),
        Digested::NotGranted(_) => return Err(DocumentRefusal::NotInRecord { why: "not-granted" }),
        Digested::Withheld => return Err(DocumentRefusal::NotInRecord { why: "withheld" }),
        Digested::Patient(_)
        | Digested::RestrictedPatient(_)
        | Digested::Ignored
        | Digested::NotShown(_)
        | Digested::HandedOver => {
            return Err(DocumentRefusal::NotInRecord {
                why: "not-a-document",
            })
        }
    }
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|_| DocumentRefusal::NoAttachment)?;
    let att = value
        .pointer("/content/0/attachment")
        .ok_or(DocumentRefusal::NoAttachment)?;
    let url = att
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(DocumentRefusal::NoAttachment)?;
    let content_type = att
        .get("contentType")
        .and_then(Value::as_str)
        .map_or_else(|| "application/octet-stream".to_owned(), media_type);
    let title = att
        .get("title")
        .or_else(|| value.get("description"))
        .and_then(Value::as_str)
        .map(|t| t.chars().take(200).collect());
    Ok(Attachment {
        url: url.to_owned(),
        content_type,
        title,
    })
}

/// The attachment's URL on the server whose FHIR base is `base`: relative to it, or absolute
/// and on the same origin. Anything else is refused (a reference must not send the gateway
/// to another server).
pub fn resolve(base: &Url, url: &str) -> Result<Url, DocumentRefusal> {
    let mut root = base.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let resolved = root.join(url).map_err(|_| DocumentRefusal::Elsewhere)?;
    if resolved.origin() != base.origin() || resolved.scheme() != base.scheme() {
        return Err(DocumentRefusal::Elsewhere);
    }
    Ok(resolved)
}

/// The leading bytes some media types always begin with.
const SIGNATURES: [(&str, &[u8]); 9] = [
    ("application/pdf", b"%PDF-"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/gif", b"GIF8"),
    ("application/rtf", b"{\\rtf"),
    ("text/rtf", b"{\\rtf"),
    ("application/msword", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
    ("application/zip", b"PK\x03\x04"),
    ("application/vnd.openxmlformats", b"PK\x03\x04"),
];

/// What `bytes` look like, by their signature.
fn looks_like(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some("a zip file (such as a Word 2007 or later document)");
    }
    SIGNATURES
        .iter()
        .find(|(_, sig)| bytes.starts_with(sig))
        .map(|(t, _)| *t)
}

/// Whether the first bytes of a document agree with its declared media type: a type with a
/// signature must begin with it; text must not be binary; no type may carry another
/// type's signature.
pub fn agrees(declared: &str, first: &[u8]) -> Result<(), String> {
    let describe = |b: &[u8]| looks_like(b).unwrap_or("something else").to_owned();
    let own = SIGNATURES.iter().find(|(t, _)| {
        declared == *t || (t.ends_with("openxmlformats") && declared.starts_with(t))
    });
    if let Some((_, sig)) = own {
        return if first.starts_with(sig) {
            Ok(())
        } else {
            Err(describe(first))
        };
    }
    if let Some(other) = looks_like(first) {
        return Err(other.to_owned());
    }
    if declared.starts_with("text/") && first.contains(&0) {
        return Err("binary data".into());
    }
    Ok(())
}

/// Read a `Binary` answer: the raw bytes (their `Content-Type` must be the declared type), or
/// a FHIR `Binary` resource (R4 `data` or STU3 `content`, base64) when the source answers
/// with one. Refused past `cap` or when the bytes are not what was declared. `status_failure`
/// turns an error answer into a refusal (a 404 is [`DocumentRefusal::NotFound`]).
pub async fn read_binary(
    mut response: reqwest::Response,
    declared: &str,
    title: Option<String>,
    cap: u64,
    status_failure: impl FnOnce(u16, &[u8]) -> FailureReason,
) -> Result<OpenedDocument, DocumentRefusal> {
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        if status == 404 {
            return Err(DocumentRefusal::NotFound);
        }
        let body = read_at_most(&mut response, 64 * 1024)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(DocumentRefusal::Source(status_failure(status, &body)));
    }
    let length = response.content_length();
    let arrived = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
        .unwrap_or_default();
    if arrived == "application/fhir+json" || arrived == "application/json" {
        // A Binary resource: base64 is four bytes for three.
        let limit = cap / 3 * 4 + 64 * 1024;
        if length.is_some_and(|n| n > limit) {
            return Err(DocumentRefusal::TooLarge {
                limit_bytes: cap,
                size: None,
            });
        }
        let body = read_at_most(&mut response, limit)
            .await?
            .ok_or(DocumentRefusal::TooLarge {
                limit_bytes: cap,
                size: None,
            })?;
        let bytes = binary_resource(&body, declared)?;
        if bytes.len() as u64 > cap {
            return Err(DocumentRefusal::TooLarge {
                limit_bytes: cap,
                size: Some(bytes.len() as u64),
            });
        }
        agrees(declared, &bytes).map_err(|arrived| DocumentRefusal::TypeMismatch {
            declared: declared.to_owned(),
            arrived,
        })?;
        return Ok(OpenedDocument {
            content_type: declared.to_owned(),
            title,
            length: Some(bytes.len() as u64),
            body: DocumentBody::whole(bytes, cap),
        });
    }
    if arrived != declared {
        return Err(DocumentRefusal::TypeMismatch {
            declared: declared.to_owned(),
            arrived: if arrived.is_empty() {
                "no type".into()
            } else {
                arrived
            },
        });
    }
    if let Some(n) = length.filter(|n| *n > cap) {
        return Err(DocumentRefusal::TooLarge {
            limit_bytes: cap,
            size: Some(n),
        });
    }
    // Enough of the start to check what it is.
    let mut first = Vec::new();
    while first.len() < 16 {
        match response.chunk().await {
            Ok(Some(c)) => first.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                return Err(DocumentRefusal::Source(
                    crate::transport::transport_failure(&e),
                ))
            }
        }
        if first.len() as u64 > cap {
            return Err(DocumentRefusal::TooLarge {
                limit_bytes: cap,
                size: None,
            });
        }
    }
    agrees(declared, &first).map_err(|arrived| DocumentRefusal::TypeMismatch {
        declared: declared.to_owned(),
        arrived,
    })?;
    Ok(OpenedDocument {
        content_type: declared.to_owned(),
        title,
        length,
        body: DocumentBody {
            first: Bytes::from(first),
            rest: Some(response),
            cap,
        },
    })
}

/// The body, or `None` past `limit` bytes.
async fn read_at_most(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Option<Vec<u8>>, DocumentRefusal> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| DocumentRefusal::Source(crate::transport::transport_failure(&e)))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The bytes of a FHIR `Binary` resource whose `contentType` must be `declared`.
pub fn binary_resource(body: &[u8], declared: &str) -> Result<Vec<u8>, DocumentRefusal> {
    use base64::Engine as _;
    let malformed = |detail: &str| {
        DocumentRefusal::Source(FailureReason::Malformed {
            detail: detail.to_owned(),
        })
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed("the Binary is not JSON"))?;
    if v.get("resourceType").and_then(Value::as_str) != Some("Binary") {
        return Err(malformed("the answer is not a Binary"));
    }
    let said = v
        .get("contentType")
        .and_then(Value::as_str)
        .map(media_type)
        .unwrap_or_default();
    if said != declared {
        return Err(DocumentRefusal::TypeMismatch {
            declared: declared.to_owned(),
            arrived: if said.is_empty() {
                "no type".into()
            } else {
                said
            },
        });
    }
    let data = v
        .get("data")
        .or_else(|| v.get("content"))
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the Binary has no content"))?;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| malformed("the Binary's content is not base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_must_be_what_it_says_it_is() {
        assert_eq!(agrees("application/pdf", b"%PDF-1.4\n"), Ok(()));
        assert_eq!(
            agrees("application/pdf", b"<html><body>"),
            Err("something else".into())
        );
        assert_eq!(agrees("text/html", b"<html>"), Ok(()));
        assert_eq!(
            agrees("text/html", b"%PDF-1.7"),
            Err("application/pdf".into())
        );
        assert_eq!(agrees("text/plain", b"a\0b"), Err("binary data".into()));
        assert_eq!(agrees("application/rtf", b"{\\rtf1\\ansi"), Ok(()));
        assert_eq!(
            agrees(
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                b"PK\x03\x04\x14\0"
            ),
            Ok(())
        );
        // The GP Connect specification's own example Binary says Word 97 and carries a zip.
        assert_eq!(
            agrees("application/msword", b"PK\x03\x04\x14\0"),
            Err("a zip file (such as a Word 2007 or later document)".into())
        );
    }

    #[test]
    fn an_attachment_is_fetched_only_from_its_own_server() {
        let base = Url::parse("https://acute.example/fhir").expect("url");
        assert_eq!(
            resolve(&base, "Binary/1").expect("relative").as_str(),
            "https://acute.example/fhir/Binary/1"
        );
        assert_eq!(
            resolve(&base, "https://acute.example/fhir/Binary/2")
                .expect("absolute")
                .as_str(),
            "https://acute.example/fhir/Binary/2"
        );
        for elsewhere in [
            "https://evil.example/fhir/Binary/1",
            "http://acute.example/fhir/Binary/1",
            "//evil.example/x",
            "https://acute.example:8443/fhir/Binary/1",
        ] {
            assert_eq!(
                resolve(&base, elsewhere),
                Err(DocumentRefusal::Elsewhere),
                "{elsewhere}"
            );
        }
    }
}
