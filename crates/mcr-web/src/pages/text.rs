//! Small pure helpers for turning values (and untrusted source text) into words on a page.

use chrono::{DateTime, NaiveDate};

/// `2024-03-12` -> `12 March 2024`; `2024-03-12T10:05:00Z` -> `12 March 2024, 10:05`;
/// `2024-03` -> `March 2024`; `2024` -> `2024`. Anything else is returned as given (it will
/// be escaped by the template), clipped to a sane length.
pub(crate) fn human_date(s: &str) -> String {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return dt.format("%-d %B %Y, %H:%M").to_string();
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.format("%-d %B %Y").to_string();
    }
    if s.len() == 7 {
        if let Ok(d) = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d") {
            return d.format("%B %Y").to_string();
        }
    }
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_owned();
    }
    // A dateTime without a zone, or with seconds fractions chrono's RFC 3339 parser refused.
    if let Some(day) = s
        .get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    {
        return day.format("%-d %B %Y").to_string();
    }
    clip(s, 40)
}

/// A date of our own (not from a source): `12 March 2024`.
pub(crate) fn human_day(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// A time of our own, in UTC and saying so: `12 March 2024 at 10:05 UTC`.
pub(crate) fn human_time(t: &DateTime<chrono::Utc>) -> String {
    t.format("%-d %B %Y at %H:%M UTC").to_string()
}

/// The date a date-ish string sorts by (`YYYY-MM-DD…` sorts as text: its first 25
/// characters, borrowed); unknown dates sort first.
pub(crate) fn sort_key(s: Option<&str>) -> &str {
    let d = s.unwrap_or_default();
    match d.char_indices().nth(25) {
        Some((at, _)) => &d[..at],
        None => d,
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Escape text for use inside SVG/XML we build ourselves (element text and attribute values).
pub(crate) fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Characters that change the direction text is laid out in: embeddings and overrides
/// (U+202A to U+202E), isolates (U+2066 to U+2069) and the direction marks (U+200E, U+200F,
/// U+061C). In a source's text they can make `exe.pdf` read as `fdp.exe` or change how a dose
/// reads, so no page shows them.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// What stands in for a removed direction control: visible, so the reader sees that the text
/// was altered.
pub(crate) const BIDI_MARKER: char = '\u{FFFD}';

/// Said once at the top of the main content when a page's text was altered.
pub(crate) const BIDI_NOTICE: &str = "<div class=\"nhsuk-inset-text\"><span class=\"nhsuk-u-visually-hidden\">Information: </span><p>Some text on this page from a source system contained hidden characters that change the direction text reads in. They are shown as \u{FFFD} so the text reads as it was sent.</p></div>";

/// A rendered page with every direction control replaced by [`BIDI_MARKER`], and a notice
/// saying so when there was one. Our own templates contain none, so whatever is replaced came
/// from data.
pub(crate) fn neutralise_bidi(html: String) -> String {
    if !html.contains(is_bidi_control) {
        return html;
    }
    let mut out: String = html
        .chars()
        .map(|c| if is_bidi_control(c) { BIDI_MARKER } else { c })
        .collect();
    const MAIN: &str = "id=\"maincontent\">";
    if let Some(at) = out.find(MAIN) {
        out.insert_str(at + MAIN.len(), BIDI_NOTICE);
    }
    out
}

/// A part of a page sent after its opening, with every direction control replaced by
/// [`BIDI_MARKER`]; `notice` says whether the page has said so yet, and the notice goes with
/// the first part that needed it (placed at the top by `.app-record__bidi`).
pub(crate) fn neutralise_bidi_part(html: String, notice: &mut bool) -> String {
    if !html.contains(is_bidi_control) {
        return html;
    }
    let mut out = String::with_capacity(html.len() + BIDI_NOTICE.len() + 40);
    if !*notice {
        out.push_str("<div class=\"app-record__bidi\">");
        out.push_str(BIDI_NOTICE);
        out.push_str("</div>");
        *notice = true;
    }
    out.extend(
        html.chars()
            .map(|c| if is_bidi_control(c) { BIDI_MARKER } else { c }),
    );
    out
}

/// Readable text from an HTML document a source sent: tags dropped (with the contents of
/// `script` and `style`), common entities decoded, runs of blank lines collapsed. The result
/// is still untrusted text and is escaped when shown.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let Some(gt) = after.find('>') else {
            // An unclosed tag: drop the remainder.
            rest = "";
            break;
        };
        let tag = after[1..gt].trim().to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .collect();
        rest = &after[gt + 1..];
        if name == "script" || name == "style" {
            let close = format!("</{name}");
            match rest.to_ascii_lowercase().find(&close) {
                Some(i) => {
                    rest = &rest[i..];
                    rest = rest.find('>').map_or("", |j| &rest[j + 1..]);
                }
                None => rest = "",
            }
            continue;
        }
        if matches!(
            name.as_str(),
            "br" | "br/"
                | "p"
                | "/p"
                | "div"
                | "/div"
                | "li"
                | "tr"
                | "/tr"
                | "h1"
                | "h2"
                | "h3"
                | "/h1"
                | "/h2"
                | "/h3"
        ) {
            out.push('\n');
        }
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut lines: Vec<&str> = Vec::new();
    for line in decoded.lines().map(str::trim_end) {
        if line.trim().is_empty() && lines.last().is_none_or(|l| l.trim().is_empty()) {
            continue;
        }
        lines.push(line);
    }
    lines.join("\n").trim().to_owned()
}

/// `SMITH, John` as the NHS prints names in lists.
pub(crate) fn list_name(family: &str, given: &str) -> String {
    let family = family.trim().to_uppercase();
    let given = given.trim();
    match (family.is_empty(), given.is_empty()) {
        (true, true) => "(no name recorded)".into(),
        (false, true) => family,
        (true, false) => given.to_owned(),
        (false, false) => format!("{family}, {given}"),
    }
}

/// FHIR administrative gender as words.
pub(crate) fn gender(g: Option<&str>) -> String {
    match g {
        Some("male") => "Male".into(),
        Some("female") => "Female".into(),
        Some("other") => "Other".into(),
        Some("unknown") | None => "Not known".into(),
        Some(other) => clip(other, 20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_words() {
        assert_eq!(human_date("2024-03-12"), "12 March 2024");
        assert_eq!(human_date("2024-03-12T10:05:00Z"), "12 March 2024, 10:05");
        assert_eq!(human_date("2024-03-12T10:05:00"), "12 March 2024");
        assert_eq!(human_date("2024-03"), "March 2024");
        assert_eq!(human_date("2024"), "2024");
        assert_eq!(human_date("yesterday"), "yesterday");
        assert_eq!(human_date(&"9".repeat(100)).chars().count(), 41);
    }

    #[test]
    fn xml_escaping_covers_markup_and_controls() {
        assert_eq!(
            escape_xml("<script>\"a\" & 'b'</script>\u{0}"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn html_becomes_text() {
        let t = html_to_text("<h1>Discharge</h1><p>Seen &amp; treated.</p><script>alert(1)</script><style>p{}</style><p>Home.</p>");
        assert_eq!(t, "Discharge\n\nSeen & treated.\n\nHome.");
        assert!(!t.contains("alert"));
        assert_eq!(html_to_text("a <b>bold</b> <unclosed"), "a bold");
        assert_eq!(html_to_text("<SCRIPT>x</SCRIPT>ok"), "ok");
    }

    #[test]
    fn names_and_genders() {
        assert_eq!(list_name("Smith", "John Paul"), "SMITH, John Paul");
        assert_eq!(list_name("", ""), "(no name recorded)");
        assert_eq!(gender(Some("female")), "Female");
        assert_eq!(gender(None), "Not known");
    }

    #[test]
    fn direction_controls_are_replaced_and_said() {
        let page = "<main class=\"x\" id=\"maincontent\"><p>note \u{202E}fdp.exe\u{202C} \u{2067}2.5\u{2069} mg \u{200F}\u{200E}\u{061C}</p></main>".to_owned();
        let out = neutralise_bidi(page);
        assert!(!out.contains(is_bidi_control), "{out}");
        assert_eq!(
            out.matches(BIDI_MARKER).count(),
            7 + 1,
            "seven replaced, one in the notice"
        );
        assert!(out.contains("hidden characters"));
        let plain = "<main id=\"maincontent\"><p>Penicillin</p></main>".to_owned();
        assert_eq!(
            neutralise_bidi(plain.clone()),
            plain,
            "untouched when clean"
        );
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
