//! Documents on the record page: the text of one a source sent inline (decoded, made plain
//! text, clipped), or, for one its source holds, the gateway's address to open it (fetched
//! only when opened).

use super::super::text::{clip, html_to_text};
use super::ItemView;
use base64::Engine;
use mcr_domain::{MergedRecord, NhsNumber, RecordItem};
use serde_json::Value;

/// Longest document text shown on the page.
const MAX_DOCUMENT_CHARS: usize = 20_000;
/// Largest inline attachment decoded.
const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;

/// The text of a document a source sent inline (`content[0].attachment.data`), as plain text.
pub(crate) fn document_text(resource: &Value) -> Option<String> {
    let att = resource.get("content")?.get(0)?.get("attachment")?;
    let ct = att
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let Some(data) = att.get("data").and_then(Value::as_str) else {
        return att.get("url").and_then(Value::as_str).map(|_| {
            "The document is held by the source organisation and is not shown here.".to_owned()
        });
    };
    if data.len() > MAX_ATTACHMENT_BYTES * 4 / 3 + 4 {
        return Some(
            "The document is too large to show here. Ask the source organisation for a copy."
                .into(),
        );
    }
    if !(ct.starts_with("text/plain") || ct.starts_with("text/html")) {
        return Some("The document is in a format that cannot be shown here. Ask the source organisation for a copy.".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = if ct.starts_with("text/html") {
        html_to_text(&text)
    } else {
        text.into_owned()
    };
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    Some(clip(text.trim(), MAX_DOCUMENT_CHARS))
}

/// Where to open a document its source holds (`content[0].attachment.url`, no inline data):
/// the gateway's own address for it, naming the patient, the source and the reference's id.
fn document_link(nhs: &NhsNumber, item: &RecordItem, resource: &Value) -> Option<String> {
    let att = resource.get("content")?.get(0)?.get("attachment")?;
    if att.get("data").is_some() {
        return None;
    }
    att.get("url").and_then(Value::as_str)?;
    let id = resource.get("id").and_then(Value::as_str).filter(|id| {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })?;
    let source = &item.sources.first()?.source;
    Some(format!("/app/patient/{nhs}/documents/{source}/{id}"))
}

/// A document's link (held by its source, fetched when opened) or its text (sent inline).
pub(super) fn decorate_document(record: &MergedRecord, item: &RecordItem, row: &mut ItemView) {
    let resource = item.resource.value();
    row.open = resource
        .as_ref()
        .and_then(|res| document_link(&record.nhs_number, item, res));
    if row.open.is_none() {
        row.body = resource.and_then(|r| document_text(&r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_decoded_to_text() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = json!({"content": [{"attachment": {"contentType": "text/html", "data": b64("<p>Discharged</p><script>alert(1)</script>")}}]});
        assert_eq!(document_text(&doc).as_deref(), Some("Discharged"));
        let doc = json!({"content": [{"attachment": {"contentType": "text/plain", "data": b64("Line one\nLine two\u{0}")}}]});
        assert_eq!(document_text(&doc).as_deref(), Some("Line one\nLine two"));
        let doc = json!({"content": [{"attachment": {"contentType": "application/pdf", "data": b64("%PDF")}}]});
        assert!(document_text(&doc)
            .unwrap_or_default()
            .contains("cannot be shown"));
        assert!(document_text(&json!({})).is_none());
    }
}
