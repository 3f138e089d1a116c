use crate::Json;

/// A code with its system and display, as read from a `Coding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// `resourceType`, if it is a plain identifier.
pub fn resource_type<J: Json>(r: &J) -> Option<&str> {
    let t = r.get("resourceType")?.as_str()?;
    (!t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphabetic())).then_some(t)
}

/// `id`, if it matches FHIR's id rule (`[A-Za-z0-9\-\.]{1,64}`).
pub fn resource_id<J: Json>(r: &J) -> Option<&str> {
    let id = r.get("id")?.as_str()?;
    (!id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then_some(id)
}

/// A string at a dotted path, e.g. `str_at(r, &["meta", "lastUpdated"])`.
pub fn str_at<'a, J: Json>(r: &'a J, path: &[&str]) -> Option<&'a str> {
    let mut v = r;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

fn coding_of<J: Json>(c: &J) -> Option<Coding> {
    let system = c.get("system")?.as_str()?;
    let code = c.get("code")?.as_str()?;
    Some(Coding {
        system: clip(system, 256),
        code: clip(code, 128),
        display: c
            .get("display")
            .and_then(J::as_str)
            .map(|d| clip(d, crate::MAX_TEXT)),
    })
}

/// Every coding in a CodeableConcept (or a list of them) at `field`.
pub fn codings<J: Json>(r: &J, field: &str) -> Vec<Coding> {
    let mut out = Vec::new();
    let mut push_cc = |cc: &J| {
        if let Some(list) = cc.get("coding").and_then(J::as_array) {
            out.extend(list.iter().take(32).filter_map(coding_of));
        }
    };
    if let Some(v) = r.get(field) {
        match v.as_array() {
            Some(items) => items.iter().take(32).for_each(&mut push_cc),
            None if v.is_object() => push_cc(v),
            None => {}
        }
    }
    out
}

/// The first coding at `field`.
pub fn first_coding<J: Json>(r: &J, field: &str) -> Option<Coding> {
    codings(r, field).into_iter().next()
}

/// The local patient id a resource refers to, from `subject` or `patient` (`Patient/123`).
pub fn patient_reference<J: Json>(r: &J) -> Option<&str> {
    let reference = r
        .get("subject")
        .or_else(|| r.get("patient"))?
        .get("reference")?
        .as_str()?;
    reference.strip_prefix("Patient/")
}

/// The `next` link of a Bundle, if any.
pub fn next_link<J: Json>(bundle: &J) -> Option<&str> {
    next_link_in(bundle.get("link")?)
}

/// The `next` link in a Bundle's `link` list, if any.
pub fn next_link_in<J: Json>(links: &J) -> Option<&str> {
    links
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(J::as_str) == Some("next"))?
        .get("url")?
        .as_str()
}

/// At most `max` characters of `s`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_defensively() {
        let r = json!({"resourceType": "Condition", "id": "c-1",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
            "subject": {"reference": "Patient/GP-1"}});
        assert_eq!(resource_type(&r), Some("Condition"));
        assert_eq!(resource_id(&r), Some("c-1"));
        assert_eq!(first_coding(&r, "code").unwrap().code, "44054006");
        assert_eq!(patient_reference(&r), Some("GP-1"));

        let hostile = json!({"resourceType": "<script>", "id": "../../etc", "code": 7});
        assert_eq!(resource_type(&hostile), None);
        assert_eq!(resource_id(&hostile), None);
        assert!(codings(&hostile, "code").is_empty());
    }

    #[test]
    fn clips_long_text() {
        let long = "x".repeat(5000);
        let c = clip(&long, 10);
        assert_eq!(c.chars().count(), 11);
    }
}
