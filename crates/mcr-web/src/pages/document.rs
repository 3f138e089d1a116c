//! Opening a document from the record page (`/app/patient/{nhs}/documents/{source}/{id}`),
//! and the answer shared with the FHIR API's `Binary` read: one gateway call
//! ([`mcr_gateway::Gateway::open_document`]: decided, checked and audited there), then the
//! bytes passed on as they arrive. PDFs open in the browser's own viewer under a sandboxing
//! policy; HTML and RTF are shown as plain text on a page of ours; anything else downloads.
//! Every answer says `Cache-Control: no-store`; nothing is written to disk.

use super::text::{clip, html_to_text};
use super::{error_page, gateway_error, render, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_domain::SourceId;
use mcr_gateway::DocumentOutcome;
use mcr_gateway::Gateway;

/// The policy every document's own bytes are served under: no script, no plugins but the
/// browser's viewer for the document itself, not framed by anyone.
pub(crate) const DOCUMENT_CSP: &str =
    "sandbox; default-src 'none'; object-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// Longest document text shown on a page.
const MAX_TEXT_CHARS: usize = 200_000;

/// How a document of a media type is given to a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presentation {
    /// The browser's own viewer (PDF), sandboxed.
    Viewer,
    /// As plain text on a page of ours (HTML, RTF, plain text).
    Text,
    /// Downloaded, never displayed by the browser.
    Download,
}

pub(crate) fn presentation(content_type: &str) -> Presentation {
    match content_type {
        "application/pdf" => Presentation::Viewer,
        "text/html" | "text/plain" | "application/rtf" | "text/rtf" => Presentation::Text,
        _ => Presentation::Download,
    }
}

/// A safe file name for a download: the title's letters and digits, and an extension for
/// the type.
pub(crate) fn file_name(title: Option<&str>, content_type: &str) -> String {
    let stem: String = title
        .unwrap_or("document")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let stem = if stem.is_empty() {
        "document".to_owned()
    } else {
        clip(&stem, 60)
    };
    let ext = match content_type {
        "application/pdf" => "pdf",
        "text/html" => "html",
        "text/plain" => "txt",
        "application/rtf" | "text/rtf" => "rtf",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        _ => "bin",
    };
    format!("{stem}.{ext}")
}

/// The document's bytes as they arrive, as `disposition` (`inline` or `attachment`), under
/// [`DOCUMENT_CSP`]. A document that passes the cap while arriving is cut off (counted).
pub(crate) fn pass_on(
    gateway: Gateway,
    doc: mcr_gateway::OpenedDocument,
    disposition: &str,
) -> Response {
    use futures::StreamExt as _;
    let name = file_name(doc.title.as_deref(), &doc.content_type);
    let content_type = doc.content_type.clone();
    let length = doc.length;
    let stream = doc.body.into_stream().inspect(move |chunk| {
        if let Err(cut) = chunk {
            gateway.document_cut_off(cut);
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCUMENT_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The words for a refusal, for a page or an `OperationOutcome`, and its status.
pub(crate) fn refusal_words(
    refusal: &mcr_gateway::DocumentRefusal,
    org: &str,
) -> (StatusCode, String) {
    use mcr_gateway::DocumentRefusal as R;
    let ask = format!("Ask {org} for a copy if you need it.");
    match refusal {
        R::NotFound => (
            StatusCode::NOT_FOUND,
            format!("{org} holds no such document for this patient."),
        ),
        R::NotInRecord { .. } => (
            StatusCode::FORBIDDEN,
            "This document is not part of this patient's record as you may see it, so it is not opened.".into(),
        ),
        R::TooLarge { limit_bytes, size } => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The document is too large to open here: the limit is {} MB{}. {ask}",
                limit_bytes / (1024 * 1024),
                size.map_or_else(String::new, |s| format!(
                    " and it is {:.1} MB",
                    s as f64 / (1024.0 * 1024.0)
                ))
            ),
        ),
        R::TypeMismatch { declared, arrived } => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The document was not opened: {org} lists it as {declared}, but what it sent is {arrived}. {ask}"
            ),
        ),
        R::NoAttachment | R::Elsewhere | R::Unsupported => (
            StatusCode::BAD_GATEWAY,
            format!("{org} does not offer this document to be opened here. {ask}"),
        ),
        R::Source(reason) => (
            StatusCode::BAD_GATEWAY,
            format!(
                "{org} could not send the document: {}. Try again shortly. {ask}",
                reason.describe()
            ),
        ),
    }
}

/// The organisation a source belongs to, by name.
pub(crate) fn org_name(gateway: &Gateway, source: &SourceId) -> String {
    gateway.federation().source(source).map_or_else(
        || "the source".to_owned(),
        |s| s.config().organisation.name.clone(),
    )
}

#[derive(Template)]
#[template(path = "app/document.html")]
struct DocumentText {
    layout: Layout,
    nhs: String,
    title: String,
    org: String,
    text: String,
}

/// Plain text from RTF: control words and groups dropped, paragraphs kept.
pub(crate) fn rtf_to_text(rtf: &str) -> String {
    let mut out = String::new();
    let mut chars = rtf.chars().peekable();
    // Groups that hold no text (font tables, styles, pictures…) are skipped whole.
    let mut depth = 0usize;
    let mut skip_from: Option<usize> = None;
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                depth += 1;
                if chars.peek() == Some(&'\\') && skip_from.is_none() {
                    let rest: String = chars.clone().take(12).collect();
                    if [
                        "\\*",
                        "\\fonttbl",
                        "\\colortbl",
                        "\\stylesheet",
                        "\\info",
                        "\\pict",
                    ]
                    .iter()
                    .any(|g| rest.starts_with(g))
                    {
                        skip_from = Some(depth);
                    }
                }
            }
            '}' => {
                if skip_from == Some(depth) {
                    skip_from = None;
                }
                depth = depth.saturating_sub(1);
            }
            '\\' => {
                let mut word = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphabetic() {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if word.is_empty() {
                    // A control symbol: an escaped character, or a hex byte (\'e9).
                    match chars.next() {
                        Some('\'') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            if skip_from.is_none() {
                                if let Ok(b) = u8::from_str_radix(&hex, 16) {
                                    out.push(char::from(b));
                                }
                            }
                        }
                        Some(s @ ('\\' | '{' | '}')) if skip_from.is_none() => out.push(s),
                        _ => {}
                    }
                    continue;
                }
                // A numeric parameter, then one optional space.
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_digit() || *n == '-')
                {
                    chars.next();
                }
                if chars.peek() == Some(&' ') {
                    chars.next();
                }
                if skip_from.is_none() && matches!(word.as_str(), "par" | "line" | "sect" | "page")
                {
                    out.push('\n');
                } else if skip_from.is_none() && word == "tab" {
                    out.push('\t');
                }
            }
            '\r' | '\n' => {}
            c if skip_from.is_none() => out.push(c),
            _ => {}
        }
    }
    out
}

/// `GET /app/patient/{nhs}/documents/{source}/{id}`.
pub(crate) async fn open(
    user: PageUser,
    State(state): State<AppState>,
    Path((raw, source, id)): Path<(String, String, String)>,
) -> Response {
    let nhs = match super::record::path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let layout = Layout::staff(&user);
    let Ok(source) = SourceId::parse(&source) else {
        return error_page(layout, StatusCode::NOT_FOUND, "No such source.");
    };
    let org = org_name(&state.gateway, &source);
    let doc = match state
        .gateway
        .open_document(&user.0, &nhs, &source, &id)
        .await
    {
        Ok(DocumentOutcome::Opened(doc)) => doc,
        Ok(DocumentOutcome::NotPermitted(decision)) => {
            return error_page(
                layout,
                StatusCode::FORBIDDEN,
                &format!(
                    "You cannot open this document now. {} Go back to the patient's page to see what you can do.",
                    decision.sentence()
                ),
            )
        }
        Ok(DocumentOutcome::Refused(refusal)) => {
            let (status, words) = refusal_words(&refusal, &org);
            return error_page(layout, status, &words);
        }
        Err(e) => return gateway_error(layout, e),
    };
    match presentation(&doc.content_type) {
        Presentation::Viewer => pass_on(state.gateway.clone(), doc, "inline"),
        Presentation::Download => pass_on(state.gateway.clone(), doc, "attachment"),
        Presentation::Text => {
            let content_type = doc.content_type.clone();
            let title = doc.title.clone().unwrap_or_else(|| "Document".into());
            let bytes = match doc.body.collect().await {
                Ok(b) => b,
                Err(cut) => {
                    state.gateway.document_cut_off(&cut);
                    return error_page(layout, StatusCode::BAD_GATEWAY, &format!("{cut}."));
                }
            };
            let raw = String::from_utf8_lossy(&bytes);
            let text = match content_type.as_str() {
                "text/html" => html_to_text(&raw),
                "application/rtf" | "text/rtf" => rtf_to_text(&raw),
                _ => raw.into_owned(),
            };
            let text: String = text
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
                .collect();
            let page = DocumentText {
                layout,
                nhs: nhs.to_string(),
                title: clip(&title, 200),
                org,
                text: clip(text.trim(), MAX_TEXT_CHARS),
            };
            let mut resp = render(StatusCode::OK, &page);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtf_becomes_its_words() {
        let rtf = r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}{\*\generator x;}\f0\fs24 Discharge summary\par Seen on 3 May.\tab Caf\'e9 \{ok\}}";
        assert_eq!(
            rtf_to_text(rtf),
            "Discharge summary\nSeen on 3 May.\tCaf\u{e9} {ok}"
        );
    }

    #[test]
    fn each_type_is_viewed_shown_as_text_or_downloaded() {
        assert_eq!(presentation("application/pdf"), Presentation::Viewer);
        assert_eq!(presentation("text/html"), Presentation::Text);
        assert_eq!(presentation("application/rtf"), Presentation::Text);
        assert_eq!(presentation("application/msword"), Presentation::Download);
        assert_eq!(presentation("image/svg+xml"), Presentation::Download);
        assert_eq!(
            file_name(Some("Discharge summary: \"x\"/../"), "application/pdf"),
            "Discharge-summary-x.pdf"
        );
        assert_eq!(file_name(None, "application/zip"), "document.bin");
    }
}
