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

/// A `Coding` as it stands in the resource, read in place: [`Coding`] is its owned, clipped
/// copy, made only for what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodingAt<'a> {
    pub system: &'a str,
    pub code: &'a str,
    pub display: Option<&'a str>,
}

/// The longest coding system and code kept, in characters.
const MAX_SYSTEM: usize = 256;
pub(crate) const MAX_CODE: usize = 128;

impl CodingAt<'_> {
    /// The copy kept: each part clipped to its limit.
    pub fn to_owned(&self) -> Coding {
        let (system, code) = self.system_and_code();
        Coding {
            system,
            code,
            display: self.display.map(|d| clip(d, crate::MAX_TEXT)),
        }
    }

    /// The system and code kept, without the display.
    pub fn system_and_code(&self) -> (String, String) {
        (clip(self.system, MAX_SYSTEM), clip(self.code, MAX_CODE))
    }
}

fn coding_at<J: Json>(c: &J) -> Option<CodingAt<'_>> {
    Some(CodingAt {
        system: c.get("system")?.as_str()?,
        code: c.get("code")?.as_str()?,
        display: c.get("display").and_then(J::as_str),
    })
}

/// Every coding in a CodeableConcept (or a list of them) at `field`, read in place: at most
/// 32 concepts of at most 32 codings each.
pub fn codings_at<'a, J: Json>(r: &'a J, field: &str) -> impl Iterator<Item = CodingAt<'a>> {
    let concepts: &'a [J] = match r.get(field) {
        Some(v) => match v.as_array() {
            Some(items) => items,
            None if v.is_object() => std::slice::from_ref(v),
            None => &[],
        },
        None => &[],
    };
    concepts.iter().take(32).flat_map(|cc| {
        cc.get("coding")
            .and_then(J::as_array)
            .unwrap_or(&[])
            .iter()
            .take(32)
            .filter_map(coding_at)
    })
}

/// Every coding in a CodeableConcept (or a list of them) at `field`.
pub fn codings<J: Json>(r: &J, field: &str) -> Vec<Coding> {
    codings_at(r, field).map(|c| c.to_owned()).collect()
}

/// The first coding at `field`.
pub fn first_coding<J: Json>(r: &J, field: &str) -> Option<Coding> {
    codings_at(r, field).next().map(|c| c.to_owned())
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

/// Whether a resource is about the patient a view asked a source for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tie {
    /// It names this patient.
    This,
    /// It names another patient: a source error, never shown as this patient's.
    Another,
    /// It cannot be tied to any patient the source holds by id: no subject, a reference to
    /// another server where the index does not hold this patient at that address, a `urn:`
    /// reference with nothing to resolve it, a contained patient without an NHS number.
    Unknown,
}

/// A patient's address at another FHIR server of the region: its base URL and the patient's
/// id there, as the patient index links that id to this patient's NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientAt<'a> {
    pub base: &'a str,
    pub local_id: &'a str,
}

/// Whom `r` (a clinical resource, through `subject` or `patient`) is about, against the
/// patient with id `local_id` at the FHIR server whose base URL is `base`, NHS number `nhs`,
/// held also at `elsewhere`. Every form R4 allows: relative (`Patient/123`, with or without
/// `_history`), absolute on that server (`https://host/fhir/Patient/123`, compared without
/// scheme, default port or trailing slash), absolute on another server where the index holds
/// this patient at that very address (a copy of an item written at another organisation of
/// the region), contained (`#p1` with the NHS number among its identifiers), and a logical
/// reference by NHS number (`identifier` only). Another server's address the index does not
/// hold for this patient cannot be tied.
pub fn tie_to_patient<J: Json>(
    r: &J,
    local_id: &str,
    nhs: &str,
    base: &str,
    elsewhere: &[PatientAt<'_>],
) -> Tie {
    let Some(who) = r
        .get("subject")
        .or_else(|| r.get("patient"))
        .or_else(|| appointment_patient(r))
    else {
        return Tie::Unknown;
    };
    let by_id = |id: &str| {
        if id == local_id {
            Tie::This
        } else {
            Tie::Another
        }
    };
    match who.get("reference").and_then(J::as_str) {
        Some(reference) => {
            if let Some(contained_id) = reference.strip_prefix('#') {
                return contained_patient(r, contained_id, nhs);
            }
            let reference = reference
                .split_once("/_history/")
                .map_or(reference, |(head, _)| head);
            if reference.contains("://") {
                return match reference.rsplit_once("/Patient/") {
                    Some((server, id)) if !id.is_empty() && !id.contains('/') => {
                        if same_server(server, base) {
                            by_id(id)
                        } else if elsewhere
                            .iter()
                            .any(|at| at.local_id == id && same_server(server, at.base))
                        {
                            Tie::This
                        } else {
                            Tie::Unknown
                        }
                    }
                    _ => Tie::Unknown,
                };
            }
            match reference.strip_prefix("Patient/") {
                Some(id) if !id.is_empty() && !id.contains('/') => by_id(id),
                _ => Tie::Unknown,
            }
        }
        None => match who.get("identifier") {
            Some(identifier) => by_nhs_number(std::slice::from_ref(identifier), nhs),
            None => Tie::Unknown,
        },
    }
}

/// An `Appointment` names its patient among its participants (R4 gives it no `subject`): the
/// first participant whose actor is a `Patient`, by reference or by type.
fn appointment_patient<J: Json>(r: &J) -> Option<&J> {
    if crate::resource_type(r) != Some("Appointment") {
        return None;
    }
    r.get("participant")?
        .as_array()?
        .iter()
        .take(64)
        .find_map(|p| {
            let actor = p.get("actor")?;
            let reference = actor.get("reference").and_then(J::as_str).unwrap_or("");
            let is_patient = reference.starts_with("Patient/")
                || reference.contains("/Patient/")
                || actor.get("type").and_then(J::as_str) == Some("Patient");
            is_patient.then_some(actor)
        })
}

/// A `#id` reference: the contained `Patient` with that id, tied by its NHS number.
fn contained_patient<J: Json>(r: &J, id: &str, nhs: &str) -> Tie {
    let found = r.get("contained").and_then(J::as_array).and_then(|list| {
        list.iter().find(|c| {
            c.get("resourceType").and_then(J::as_str) == Some("Patient")
                && c.get("id").and_then(J::as_str) == Some(id)
        })
    });
    match found
        .and_then(|p| p.get("identifier"))
        .and_then(J::as_array)
    {
        Some(identifiers) => by_nhs_number(identifiers, nhs),
        None => Tie::Unknown,
    }
}

/// Tied by the NHS number among `identifiers`; another patient's NHS number is another
/// patient; no NHS number at all cannot be tied.
fn by_nhs_number<J: Json>(identifiers: &[J], nhs: &str) -> Tie {
    let mut numbers = identifiers
        .iter()
        .filter(|i| i.get("system").and_then(J::as_str) == Some(mcr_domain::NhsNumber::SYSTEM));
    match numbers
        .next()
        .and_then(|i| i.get("value"))
        .and_then(J::as_str)
    {
        Some(v) if v.split_whitespace().collect::<String>() == nhs => Tie::This,
        Some(_) => Tie::Another,
        None => Tie::Unknown,
    }
}

/// Whether two base URLs name one server: compared without scheme, default port, trailing
/// slash or the host's case.
fn same_server(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let rest = u
            .split_once("://")
            .map_or(u, |(_, r)| r)
            .trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = host
            .strip_suffix(":80")
            .or_else(|| host.strip_suffix(":443"))
            .unwrap_or(host)
            .to_ascii_lowercase();
        format!("{host}/{path}")
    }
    norm(a) == norm(b)
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

/// The fields of a Patient that say where the person is: never shown for a restricted patient
/// (the PDS FHIR API removes the same ones from a restricted patient's answers).
pub const LOCATION_FIELDS: [&str; 4] = ["address", "telecom", "contact", "generalPractitioner"];

/// Whether a resource carries the v3-Confidentiality label `R` (restricted) or `V` (very
/// restricted) in `meta.security`: on a Patient, PDS's restricted (S-flagged) patient.
pub fn restricted_label<J: Json>(r: &J) -> bool {
    r.get("meta")
        .and_then(|m| m.get("security"))
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .take(32)
        .any(|s| {
            s.get("system").and_then(J::as_str)
                == Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")
                && matches!(s.get("code").and_then(J::as_str), Some("R" | "V"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_is_tied_by_every_form_of_reference_r4_allows() {
        let base = "https://gp.example.org/fhir";
        let nhs = "9434765919";
        let tie = |subject: serde_json::Value| {
            tie_to_patient(
                &json!({"resourceType": "Condition", "subject": subject,
                "contained": [
                    {"resourceType": "Patient", "id": "p1", "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]},
                    {"resourceType": "Patient", "id": "p2", "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765870"}]},
                    {"resourceType": "Patient", "id": "p3"}
                ]}),
                "123",
                nhs,
                base,
                &[PatientAt {
                    base: "https://acute.example.org/fhir/",
                    local_id: "A77",
                }],
            )
        };
        for this in [
            json!({"reference": "Patient/123"}),
            json!({"reference": "Patient/123/_history/4"}),
            json!({"reference": "https://gp.example.org/fhir/Patient/123"}),
            json!({"reference": "http://GP.example.org:80/fhir/Patient/123"}),
            json!({"reference": "https://gp.example.org:443/fhir/Patient/123/_history/2"}),
            json!({"reference": "#p1"}),
            json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "943 476 5919"}}),
            // Another server of the region, where the index holds this patient as A77.
            json!({"reference": "https://acute.example.org/fhir/Patient/A77"}),
            json!({"reference": "http://ACUTE.example.org/fhir/Patient/A77/_history/1"}),
        ] {
            assert_eq!(tie(this.clone()), Tie::This, "{this}");
        }
        for another in [
            json!({"reference": "Patient/124"}),
            json!({"reference": "https://gp.example.org/fhir/Patient/124"}),
            json!({"reference": "#p2"}),
            json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765870"}}),
        ] {
            assert_eq!(tie(another.clone()), Tie::Another, "{another}");
        }
        for unknown in [
            json!({"reference": "https://other.example.org/fhir/Patient/123"}),
            // The region's other server, but not the id the index holds for this patient
            // there, nor its own id here.
            json!({"reference": "https://acute.example.org/fhir/Patient/A78"}),
            json!({"reference": "https://acute.example.org/fhir/Patient/123"}),
            json!({"reference": "https://acute.example.org/other/Patient/A77"}),
            json!({"reference": "https://gp.example.org/fhir/other/Patient/123"}),
            json!({"reference": "urn:uuid:0b7c2f0e-5d1e-4f5a-9c55-3f0f6a1a2b3c"}),
            json!({"reference": "#p3"}),
            json!({"reference": "#nope"}),
            json!({"reference": "Group/123"}),
            json!({"reference": "Patient/"}),
            json!({"identifier": {"system": "https://example.org/mrn", "value": "123"}}),
            json!({"display": "Ann Smith"}),
        ] {
            assert_eq!(tie(unknown.clone()), Tie::Unknown, "{unknown}");
        }
        let none = json!({"resourceType": "Condition"});
        assert_eq!(tie_to_patient(&none, "123", nhs, base, &[]), Tie::Unknown);
        let via_patient =
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/123"}});
        assert_eq!(
            tie_to_patient(&via_patient, "123", nhs, base, &[]),
            Tie::This
        );
        // An appointment names its patient among its participants.
        let appointment = |actor: serde_json::Value| {
            json!({"resourceType": "Appointment", "participant": [
                {"actor": {"reference": "Location/clinic"}}, {"actor": actor}]})
        };
        let t = |r: serde_json::Value| tie_to_patient(&r, "123", nhs, base, &[]);
        assert_eq!(
            t(appointment(json!({"reference": "Patient/123"}))),
            Tie::This
        );
        assert_eq!(
            t(appointment(
                json!({"reference": "https://gp.example.org/fhir/Patient/124"})
            )),
            Tie::Another
        );
        assert_eq!(
            t(appointment(json!({"type": "Patient", "identifier":
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}}))),
            Tie::This
        );
        assert_eq!(
            t(appointment(json!({"reference": "Practitioner/9"}))),
            Tie::Unknown,
            "an appointment with no patient among its participants cannot be tied"
        );
    }

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
    fn codings_read_in_place_are_the_kept_codings_unclipped() {
        let long = "d".repeat(crate::MAX_TEXT + 10);
        let r = json!({"category": [
            {"coding": [{"code": "no-system"}, {"system": "s1", "code": "c1", "display": long}]},
            {"text": "no codings"},
            {"coding": [{"system": "s2", "code": "c2"}]}
        ]});
        let text = r.to_string();
        let doc = crate::Doc::parse(&text).expect("parses");
        let at: Vec<CodingAt<'_>> = codings_at(&doc, "category").collect();
        assert_eq!(
            at.iter().map(|c| (c.system, c.code)).collect::<Vec<_>>(),
            [("s1", "c1"), ("s2", "c2")]
        );
        assert_eq!(at[0].display, Some(long.as_str()));
        let kept = codings(&r, "category");
        assert_eq!(kept, at.iter().map(CodingAt::to_owned).collect::<Vec<_>>());
        assert_eq!(first_coding(&doc, "category"), Some(kept[0].clone()));
        assert!(kept[0]
            .display
            .as_ref()
            .is_some_and(|d| d.len() < long.len()));
        assert_eq!(at[1].system_and_code(), ("s2".to_owned(), "c2".to_owned()));
        assert_eq!(codings_at(&doc, "code").count(), 0);
    }

    #[test]
    fn clips_long_text() {
        let long = "x".repeat(5000);
        let c = clip(&long, 10);
        assert_eq!(c.chars().count(), 11);
    }
}
