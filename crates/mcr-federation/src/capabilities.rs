//! What each source says it can do: its CapabilityStatement (`GET [base]/metadata`), read at
//! start-up and again every so often ([`crate::Federation::discover`]), so a view asks a
//! source only for the resource types it can search by patient.
//!
//! Configuration overrides it: a source configured with `resource_types` is asked for those,
//! whatever its statement says (the differences are shown beside the statement). A source
//! configured without them is asked for the types its statement lists as searchable by
//! `patient` or `subject`; until it has said, or when it cannot, for every type the grant
//! allows. What was read, when, and why not are kept for the operators' page and `/metrics`.

use chrono::{DateTime, Utc};
use mcr_domain::FailureReason;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The largest CapabilityStatement read (some servers list every profile they know).
pub const MAX_STATEMENT_BYTES: u64 = 4 * 1024 * 1024;

/// What one resource type's entry in the statement says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeCapability {
    /// `searchParam` names, as listed.
    pub search_params: Vec<String>,
    /// Searchable for one patient: `search-type` is listed and so is `patient` or `subject`.
    pub by_patient: bool,
    /// Its `patient` parameter takes the `:identifier` modifier (`patient:identifier=…`
    /// finds items naming the patient by identifier only): its `definition` names a
    /// `SearchParameter` the statement holds (contained, by `#id` or its `url`) whose
    /// `modifier` lists `identifier`. A statement has no other way to say so.
    pub patient_identifier: bool,
}

impl TypeCapability {
    /// Whether `subject` is among its search parameters.
    pub fn has_subject(&self) -> bool {
        self.search_params.iter().any(|p| p == "subject")
    }
}

/// A source's CapabilityStatement, as far as the gateway uses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Each resource type listed, by name.
    pub types: BTreeMap<String, TypeCapability>,
    /// The `batch` interaction at system level.
    pub batch: bool,
    pub fhir_version: Option<String>,
    /// `software.name` and `software.version`, as given.
    pub software: Option<String>,
    /// Resource entries passed over because their `type` is not a resource type's name.
    pub unreadable_entries: usize,
}

impl Capabilities {
    /// Read a CapabilityStatement; a sentence saying what is wrong otherwise.
    pub fn read(statement: &Value) -> Result<Self, String> {
        match statement["resourceType"].as_str() {
            Some("CapabilityStatement") => {}
            Some(other) => {
                return Err(format!(
                    "its /metadata answered with a {other}, not a CapabilityStatement"
                ))
            }
            None => return Err("its /metadata answer is not a FHIR resource".into()),
        }
        let Some(rest) = statement["rest"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["mode"] == "server"))
        else {
            return Err("its CapabilityStatement has no rest entry in server mode".into());
        };
        let codes = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["code"].as_str().map(str::to_owned))
                .collect()
        };
        // The SearchParameters the statement holds, by `#id` and by `url`, with their modifiers.
        let mut modifiers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in statement["contained"].as_array().into_iter().flatten() {
            if c["resourceType"] != "SearchParameter" {
                continue;
            }
            let listed: Vec<String> = c["modifier"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect();
            if let Some(id) = c["id"].as_str() {
                modifiers.insert(format!("#{id}"), listed.clone());
            }
            if let Some(url) = c["url"].as_str() {
                modifiers.insert(url.to_owned(), listed);
            }
        }
        let mut types = BTreeMap::new();
        let mut unreadable_entries = 0;
        for r in rest["resource"].as_array().into_iter().flatten() {
            let Some(name) = r["type"].as_str().filter(|t| is_type_name(t)) else {
                unreadable_entries += 1;
                continue;
            };
            let search_params: Vec<String> = r["searchParam"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let patient_identifier = r["searchParam"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == "patient")
                .filter_map(|p| modifiers.get(p["definition"].as_str()?))
                .any(|m| m.iter().any(|m| m == "identifier"));
            let searchable = codes(&r["interaction"]).iter().any(|c| c == "search-type");
            let by_patient = searchable
                && search_params
                    .iter()
                    .any(|p| p == "patient" || p == "subject");
            types.insert(
                name.to_owned(),
                TypeCapability {
                    search_params,
                    by_patient,
                    patient_identifier,
                },
            );
        }
        let software = statement["software"]["name"].as_str().map(|n| {
            match statement["software"]["version"].as_str() {
                Some(v) => format!("{n} {v}"),
                None => n.to_owned(),
            }
        });
        Ok(Self {
            batch: codes(&rest["interaction"]).iter().any(|c| c == "batch"),
            fhir_version: statement["fhirVersion"].as_str().map(str::to_owned),
            software,
            types,
            unreadable_entries,
        })
    }

    /// Whether a view may ask for `resource_type` here (a `Patient` is read, not searched).
    pub fn answers(&self, resource_type: &str) -> bool {
        resource_type == "Patient" || self.types.get(resource_type).is_some_and(|t| t.by_patient)
    }
}

/// A FHIR resource type's name: letters, starting with a capital.
fn is_type_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphabetic())
}

/// The last attempt to read a source's statement, and the last one read.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The statement last read, and when.
    pub capabilities: Option<(Capabilities, DateTime<Utc>)>,
    /// Why the last attempt failed, and when; `None` after a success.
    pub failure: Option<(String, DateTime<Utc>)>,
    /// Attempts that failed since start-up.
    pub failures: u64,
}

/// One source's discovery, shared by every view.
#[derive(Debug, Default)]
pub struct Discovery {
    state: RwLock<Discovered>,
}

impl Discovery {
    pub fn snapshot(&self) -> Discovered {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What the statement last read says of `resource_type`: `None` when nothing has been
    /// read yet, or it does not list the type.
    pub fn of_type(&self, resource_type: &str) -> Option<TypeCapability> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .capabilities
            .as_ref()
            .and_then(|(c, _)| c.types.get(resource_type).cloned())
    }

    /// Whether a view may ask for `resource_type`: `None` when nothing has been read yet.
    pub fn answers(&self, resource_type: &str) -> Option<bool> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .capabilities
            .as_ref()
            .map(|(c, _)| c.answers(resource_type))
    }

    /// Record an attempt. A failure keeps the statement read before (a source that was
    /// briefly down still supports what it did).
    pub fn record(&self, outcome: Result<Capabilities, String>, at: DateTime<Utc>) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(c) => {
                state.capabilities = Some((c, at));
                state.failure = None;
            }
            Err(why) => {
                state.failure = Some((why, at));
                state.failures += 1;
            }
        }
    }
}

/// The words for a failed `/metadata` request.
pub fn failure_words(reason: &FailureReason) -> String {
    format!("its /metadata {}", reason.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_type_is_asked_for_only_when_searchable_by_patient() {
        let statement = json!({
            "resourceType": "CapabilityStatement",
            "fhirVersion": "4.0.1",
            "software": {"name": "HAPI FHIR Server", "version": "7.0.0"},
            "rest": [{
                "mode": "server",
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "resource": [
                    {"type": "Condition", "interaction": [{"code": "read"}, {"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference"}, {"name": "code", "type": "token"}]},
                    {"type": "Observation", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "subject", "type": "reference"}]},
                    {"type": "Immunization", "interaction": [{"code": "read"}],
                     "searchParam": [{"name": "patient", "type": "reference"}]},
                    {"type": "Procedure", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "code", "type": "token"}]},
                    {"type": "not a type"}
                ]
            }]
        });
        let c = Capabilities::read(&statement).expect("read");
        assert!(c.batch);
        assert_eq!(c.software.as_deref(), Some("HAPI FHIR Server 7.0.0"));
        assert!(c.answers("Condition") && c.answers("Observation") && c.answers("Patient"));
        assert!(!c.answers("Immunization"), "read only: cannot be searched");
        assert!(!c.answers("Procedure"), "no patient or subject parameter");
        assert!(!c.answers("AllergyIntolerance"), "not listed");
        assert_eq!(c.types.len(), 4, "the malformed entry is skipped");
        assert_eq!(c.unreadable_entries, 1, "and counted");
    }

    #[test]
    fn the_identifier_modifier_is_read_from_the_search_parameter_the_statement_holds() {
        let statement = json!({
            "resourceType": "CapabilityStatement",
            "contained": [
                {"resourceType": "SearchParameter", "id": "pat", "url": "https://x.example/SearchParameter/pat",
                 "code": "patient", "type": "reference", "modifier": ["identifier", "missing"]},
                {"resourceType": "SearchParameter", "id": "plain", "code": "patient", "type": "reference"}
            ],
            "rest": [{
                "mode": "server",
                "resource": [
                    {"type": "Condition", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference", "definition": "#pat"},
                                     {"name": "subject", "type": "reference"}]},
                    {"type": "Flag", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference", "definition": "https://x.example/SearchParameter/pat"}]},
                    {"type": "Observation", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference", "definition": "#plain"}]},
                    {"type": "Procedure", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference",
                                      "definition": "http://hl7.org/fhir/SearchParameter/clinical-patient"}]}
                ]
            }]
        });
        let c = Capabilities::read(&statement).expect("read");
        let identifier = |t: &str| c.types[t].patient_identifier;
        assert!(identifier("Condition"), "by #id");
        assert!(identifier("Flag"), "by url");
        assert!(
            !identifier("Observation"),
            "its definition lists no modifier"
        );
        assert!(
            !identifier("Procedure"),
            "a definition the statement does not hold says nothing"
        );
        assert!(c.types["Condition"].has_subject() && !c.types["Flag"].has_subject());
    }

    #[test]
    fn what_is_not_a_statement_is_said() {
        for (v, words) in [
            (
                json!({"resourceType": "Bundle", "type": "searchset"}),
                "a Bundle",
            ),
            (json!({"hello": 1}), "not a FHIR resource"),
            (
                json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "client"}]}),
                "no rest entry in server mode",
            ),
        ] {
            let e = Capabilities::read(&v).expect_err("refused");
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn a_failure_keeps_what_was_read_before() {
        let d = Discovery::default();
        assert_eq!(d.answers("Condition"), None, "nothing read yet");
        let mut c = Capabilities::default();
        c.types.insert(
            "Condition".into(),
            TypeCapability {
                search_params: vec!["patient".into()],
                by_patient: true,
                patient_identifier: false,
            },
        );
        let at = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).expect("time");
        d.record(Ok(c), at);
        d.record(Err("down".into()), at);
        assert_eq!(d.answers("Condition"), Some(true));
        assert_eq!(d.answers("Flag"), Some(false));
        let s = d.snapshot();
        assert_eq!(s.failures, 1);
        assert_eq!(s.failure.map(|f| f.0).as_deref(), Some("down"));
    }
}
