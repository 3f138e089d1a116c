//! FHIR shapes of what the gateway returns: our Patient, the merged record as a Bundle with a
//! Provenance per item and an OperationOutcome naming what is missing, and access decisions
//! as OperationOutcomes.

use crate::ApiError;
use axum::http::StatusCode;
use mcr_domain::{NhsNumber, OdsCode, RecordItem, SourceOutcome, SourceStatus, PRACTICE_WITHHELD};
use mcr_fhir::{operation_outcome, Issue, IssueType};
use mcr_gateway::{PatientMatch, View};
use mcr_policy::Decision;
use serde_json::{json, Value};

/// Our Patient: the index's demographics, with the NHS number as id.
pub(crate) fn patient_resource(m: &PatientMatch) -> Value {
    let p = &m.patient;
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.nhs_number.as_str(),
        "identifier": [{"system": NhsNumber::SYSTEM, "value": p.nhs_number.as_str()}],
        "name": [{"use": "official", "family": p.family, "given": p.given.split_whitespace().collect::<Vec<_>>()}],
        "birthDate": p.birth_date.format("%Y-%m-%d").to_string(),
    });
    if let Some(g) = &p.gender {
        r["gender"] = json!(g);
    }
    if let Some(pc) = &p.postcode {
        r["address"] = json!([{"postalCode": pc}]);
    }
    if m.location_withheld {
        // Restricted: the postcode and practice were removed before they reached here.
        r["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "restricted"}]});
    }
    if let Some(gp) = &p.gp_practice {
        r["generalPractitioner"] = json!([{"type": "Organization", "identifier": {"system": OdsCode::SYSTEM, "value": gp}}]);
    }
    // Where the patient is held, and how each link was made (no `extension` when nowhere:
    // R4 allows no empty arrays).
    let held: Vec<Value> = m
        .links
        .iter()
        .map(|l| {
            json!({
                "url": "https://mycarerecord.example/fhir/StructureDefinition/source-record",
                "extension": [
                    {"url": "source", "valueString": l.source.as_str()},
                    {"url": "localId", "valueString": l.local_id},
                    {"url": "matchedBy", "valueCode": l.method.as_str()},
                    {"url": "demographicsDiffer", "valueBoolean": m.differing_sources.iter().any(|s| s == l.source.as_str())}
                ]
            })
        })
        .collect();
    if !held.is_empty() {
        r["extension"] = held.into();
    }
    r
}

/// A Provenance for one item: every source organisation that holds it (custodian) and the
/// item at each (entity). Written from borrowed fields: a view has one per item.
fn provenance<'a>(item: &'a RecordItem, recorded: &'a str) -> Provenance<'a> {
    Provenance {
        resource_type: "Provenance",
        target: [Reference {
            reference: &item.sources[0].full_url,
        }],
        recorded,
        agent: item
            .sources
            .iter()
            .map(|s| Agent {
                kind: CUSTODIAN,
                who: Who {
                    // A restricted patient's GP practice by its words only: its ODS code
                    // says where they live.
                    identifier: (s.org_name != PRACTICE_WITHHELD).then(|| Identifier {
                        system: OdsCode::SYSTEM,
                        value: s.org_code.as_str(),
                    }),
                    display: &s.org_name,
                },
            })
            .collect(),
        entity: item
            .sources
            .iter()
            .map(|s| Entity {
                role: "source",
                what: Reference {
                    reference: &s.full_url,
                },
            })
            .collect(),
    }
}

#[derive(serde::Serialize)]
struct Provenance<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    target: [Reference<'a>; 1],
    recorded: &'a str,
    agent: Vec<Agent<'a>>,
    entity: Vec<Entity<'a>>,
}

#[derive(serde::Serialize)]
struct Reference<'a> {
    reference: &'a str,
}

#[derive(serde::Serialize)]
struct Agent<'a> {
    #[serde(rename = "type")]
    kind: CodeableConcept,
    who: Who<'a>,
}

#[derive(serde::Serialize)]
struct CodeableConcept {
    coding: [Coding; 1],
}

#[derive(serde::Serialize)]
struct Coding {
    system: &'static str,
    code: &'static str,
}

const CUSTODIAN: CodeableConcept = CodeableConcept {
    coding: [Coding {
        system: "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
        code: "custodian",
    }],
};

#[derive(serde::Serialize)]
struct Who<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    display: &'a str,
}

#[derive(serde::Serialize)]
struct Identifier<'a> {
    system: &'static str,
    value: &'a str,
}

#[derive(serde::Serialize)]
struct Entity<'a> {
    role: &'static str,
    what: Reference<'a>,
}

/// The merged record as a `searchset` Bundle: each resource once (as its first source sent
/// it), a Provenance naming every source that holds it, and an OperationOutcome naming every
/// source that failed and whether anything was withheld.
///
/// Serialised straight from the record: each resource is written as the text its source sent
/// (checked JSON, never decoded and encoded again).
///
/// `page` cuts the items to one page (with `link`s to the others); the Patient and the
/// OperationOutcome are on every page, so no page hides a source's failure. `None`: all of it.
///
/// The whole Bundle in one buffer; the API writes it a part at a time ([`BundleWriter`]).
#[cfg(test)]
pub(crate) fn everything(
    view: &View,
    now: chrono::DateTime<chrono::Utc>,
    page: Option<&Page>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    BundleWriter::new(view, now, page.cloned()).write(view, &mut out, usize::MAX)?;
    Ok(out)
}

/// `$everything`'s Bundle ([`everything`] says what it holds), written a part at a time: a
/// record of thousands of items is never encoded whole beside the record it is encoded from.
/// Each call to [`BundleWriter::write`] goes on where the last stopped, from the same view.
pub(crate) struct BundleWriter {
    recorded: String,
    page: Option<Page>,
    /// The next item to write, counted over the record's sections in order.
    next: usize,
    /// One past the last item to write.
    end: usize,
    at: At,
}

/// Where a [`BundleWriter`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Nothing written yet: next, the Bundle's own fields and the Patient.
    Start,
    /// Writing the items (each with its Provenance).
    Items,
    /// Every item written: next, the OperationOutcome and the Bundle's end.
    Outcome,
    Done,
}

impl BundleWriter {
    pub(crate) fn new(view: &View, now: chrono::DateTime<chrono::Utc>, page: Option<Page>) -> Self {
        let total = view.record.item_count();
        let (skip, take) = page.as_ref().map_or((0, total), |p| (p.offset, p.count));
        let next = skip.min(total);
        Self {
            recorded: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            page,
            next,
            end: next.saturating_add(take).min(total),
            at: At::Start,
        }
    }

    /// About how many bytes the rest of the Bundle takes (a little more, as a rule): each
    /// item as its source sent it, its entry's `fullUrl` and its Provenance (about 500 bytes
    /// and 350 more for each further source), and a few KiB for the Patient and the
    /// OperationOutcome. A buffer of this size is written into without growing: grown from
    /// empty, an ordinary record's few hundred KiB are copied again at every doubling.
    pub(crate) fn size_hint(&self, view: &View) -> usize {
        let items: usize = view
            .record
            .sections
            .iter()
            .flat_map(|(_, items)| items)
            .skip(self.next)
            .take(self.end - self.next)
            .map(|i| {
                i.resource.json().len()
                    + 3 * i.sources[0].full_url.len()
                    + 500
                    + 350 * i.sources.len().saturating_sub(1)
            })
            .sum();
        items + 16 * 1024
    }

    /// Write the Bundle's next entries to `out` until it holds at least `upto` bytes or the
    /// Bundle is written; `true` once it is. `view` must be the one the writer was made for.
    pub(crate) fn write(
        &mut self,
        view: &View,
        out: &mut Vec<u8>,
        upto: usize,
    ) -> Result<bool, serde_json::Error> {
        let record = &view.record;
        if self.at == At::Start {
            let total = record.item_count();
            out.extend_from_slice(br#"{"resourceType":"Bundle","type":"searchset","timestamp":"#);
            serde_json::to_writer(&mut *out, &self.recorded)?;
            out.extend_from_slice(format!(r#","total":{total},"meta":"#).as_bytes());
            serde_json::to_writer(
                &mut *out,
                &json!({"tag": [{"system": "https://mycarerecord.example/fhir/CodeSystem/access-basis", "code": view.basis.code()}]}),
            )?;
            let links = self
                .page
                .as_ref()
                .map(|p| p.links(total))
                .unwrap_or_default();
            if !links.is_empty() {
                out.extend_from_slice(br#","link":"#);
                serde_json::to_writer(&mut *out, &links)?;
            }
            out.extend_from_slice(br#","entry":["#);
            // The source's Patient, at the source's address: its fullUrl agrees with its id.
            if let Some(p) = &record.patient {
                serde_json::to_writer(
                    &mut *out,
                    &Entry {
                        full_url: record.patient_url.as_deref().map(Into::into),
                        resource: Res::Borrowed(p),
                        search: Search { mode: "match" },
                    },
                )?;
                out.push(b',');
            }
            self.at = At::Items;
        }
        if self.at == At::Items {
            let mut sections = record.sections.iter().map(|(_, items)| items.as_slice());
            // The section holding item `next`, and its place there.
            let mut items: &[RecordItem] = &[];
            let mut at = self.next;
            for section in sections.by_ref() {
                if at < section.len() {
                    items = section;
                    break;
                }
                at -= section.len();
            }
            while self.next < self.end && out.len() < upto {
                let Some(item) = items.get(at) else {
                    match sections.next() {
                        Some(section) => (items, at) = (section, 0),
                        // Fewer items than counted: cannot be, but never write forever.
                        None => self.next = self.end,
                    }
                    continue;
                };
                serde_json::to_writer(
                    &mut *out,
                    &Entry {
                        full_url: Some(item.sources[0].full_url.as_str().into()),
                        resource: Res::AsSent(&item.resource),
                        search: Search { mode: "include" },
                    },
                )?;
                out.push(b',');
                serde_json::to_writer(
                    &mut *out,
                    &Entry {
                        full_url: None,
                        resource: Res::Provenance(provenance(item, &self.recorded)),
                        search: Search { mode: "include" },
                    },
                )?;
                out.push(b',');
                at += 1;
                self.next += 1;
            }
            if self.next >= self.end {
                self.at = At::Outcome;
            }
        }
        if self.at == At::Outcome && out.len() < upto {
            serde_json::to_writer(
                &mut *out,
                &Entry {
                    full_url: None,
                    resource: Res::Owned(operation_outcome(&outcome_issues(record))),
                    search: Search { mode: "outcome" },
                },
            )?;
            out.extend_from_slice(b"]}");
            self.at = At::Done;
        }
        Ok(self.at == At::Done)
    }
}

/// What the Bundle's OperationOutcome says: who disagrees on who this is, each source's
/// answer (failed, partial, not tied, types not shown, its warnings), and what was withheld.
fn outcome_issues(record: &mcr_domain::MergedRecord) -> Vec<Issue> {
    let mut issues = Vec::new();
    for s in &record.sources {
        match &s.status {
            SourceStatus::Failed(reason) => issues.push(
                Issue::warning(
                    if reason.code() == "timeout" {
                        IssueType::Timeout
                    } else {
                        IssueType::Incomplete
                    },
                    &format!("source-{}", reason.code()),
                    format!(
                        "{} {}: its records are missing from this view.",
                        named(s),
                        reason.describe()
                    ),
                )
                .at(s.source.as_str()),
            ),
            SourceStatus::Partial(reason) => {
                issues.push(
                    Issue::warning(
                        IssueType::Incomplete,
                        &format!("source-partial-{}", reason.code()),
                        s.partial_sentence().unwrap_or_default(),
                    )
                    .at(s.source.as_str()),
                );
                if let Some(sentence) = s.not_tied_sentence() {
                    issues.push(
                        Issue::warning(IssueType::Incomplete, "items-not-tied", sentence)
                            .at(s.source.as_str()),
                    );
                }
            }
            SourceStatus::Ok => match s.not_tied_sentence() {
                // Answered, but not everything it sent could be shown as this patient's: a
                // warning, not "answered".
                Some(sentence) => issues.push(
                    Issue::warning(IssueType::Incomplete, "items-not-tied", sentence)
                        .at(s.source.as_str()),
                ),
                None => issues.push(Issue {
                    severity: mcr_fhir::IssueSeverity::Information,
                    code: IssueType::Informational,
                    detail_code: Some("source-ok".into()),
                    text: format!("{} answered.", named(s)),
                    expression: Some(s.source.to_string()),
                }),
            },
        }
        // Forms of patient reference the source's search cannot be asked for: items naming
        // the patient only so may exist, and are not here.
        if let Some(sentence) = s.unsearchable_sentence() {
            issues.push(
                Issue::warning(IssueType::Incomplete, "references-not-searchable", sentence)
                    .at(s.source.as_str()),
            );
        }
        // Types the record has no place for: named and counted, never ignored in silence.
        if let Some(sentence) = s.not_shown_sentence() {
            issues.push(
                Issue::warning(IssueType::Incomplete, "types-not-shown", sentence)
                    .at(s.source.as_str()),
            );
        }
        for w in &s.warnings {
            issues.push(Issue {
                severity: mcr_fhir::IssueSeverity::Warning,
                code: IssueType::Incomplete,
                detail_code: Some("source-warning".into()),
                text: format!("{}: {w}", named(s)),
                expression: Some(s.source.to_string()),
            });
        }
    }
    // A wrong-patient risk: said first among the warnings a reader checks.
    issues.splice(
        0..0,
        record.demographics_differ.iter().map(|sentence| {
            Issue::warning(
                IssueType::Incomplete,
                "demographics-differ",
                sentence.clone(),
            )
        }),
    );
    if record.withheld {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("items-withheld".into()),
            text: "Some information has been withheld from this view because it is legally restricted or marked confidential by its source.".into(),
            expression: None,
        });
    }
    if record.location_withheld {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("location-withheld".into()),
            text: "Restricted record: the patient's address, telephone numbers and registered practice are withheld from every view.".into(),
            expression: Some("Patient".into()),
        });
    }
    // Said, and counted: the items a restricted patient's practice holds are shown, under
    // its words only.
    let practice_items = record
        .sections
        .iter()
        .flat_map(|(_, items)| items)
        .filter(|i| i.sources.iter().any(|s| s.org_name == PRACTICE_WITHHELD))
        .count();
    if record.location_withheld && practice_items > 0 {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("practice-withheld".into()),
            text: format!(
                "Restricted record: the patient's GP practice is not named; {practice_items} item(s) it holds are shown as held by \"{PRACTICE_WITHHELD}\", without its ODS code or name."
            ),
            expression: Some("Provenance.agent".into()),
        });
    }
    for s in &record.unavailable_sections {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("section-not-available-to-role".into()),
            text: format!("{} is not available to your role.", s.title()),
            expression: Some(s.as_str().into()),
        });
    }
    issues
}

/// A source as the OperationOutcome names it: its name and ODS code, or for a restricted
/// patient's GP practice only the words that withhold it.
fn named(s: &SourceOutcome) -> String {
    if s.org_name == PRACTICE_WITHHELD {
        s.org_name.clone()
    } else {
        format!("{} ({})", s.org_name, s.org_code)
    }
}

/// One page of `$everything`: `count` items from `offset` (in the record's order), and the
/// address to link the other pages at (`…/$everything`, without a query).
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub offset: usize,
    pub count: usize,
    pub url: String,
}

impl Page {
    /// `self`, `first`, and `previous` / `next` where there is such a page.
    fn links(&self, total: usize) -> Vec<Link> {
        let at = |relation: &'static str, offset: usize| Link {
            relation,
            url: format!("{}?_count={}&_offset={offset}", self.url, self.count),
        };
        let mut links = vec![at("self", self.offset), at("first", 0)];
        if self.count == 0 {
            // `_count=0`: the total alone; there are no pages to walk.
            return links;
        }
        if self.offset > 0 {
            links.push(at("previous", self.offset.saturating_sub(self.count)));
        }
        if self.offset + self.count < total {
            links.push(at("next", self.offset + self.count));
        }
        links
    }
}

#[derive(serde::Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl", skip_serializing_if = "Option::is_none")]
    full_url: Option<std::borrow::Cow<'a, str>>,
    resource: Res<'a>,
    search: Search,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Res<'a> {
    AsSent(&'a mcr_domain::SourceJson),
    Provenance(Provenance<'a>),
    Borrowed(&'a Value),
    Owned(Value),
}

#[derive(serde::Serialize)]
struct Search {
    mode: &'static str,
}

/// A decision that is not a permit, as the error the API returns.
pub(crate) fn decision_error(decision: &Decision) -> ApiError {
    let (code, status, issue_type) = match decision {
        Decision::Deny(d) => (d.code.as_str(), StatusCode::FORBIDDEN, IssueType::Forbidden),
        Decision::NeedsPermission { .. } => (
            "needs-permission",
            StatusCode::FORBIDDEN,
            IssueType::Security,
        ),
        Decision::NeedsRelationship { .. } => (
            "needs-relationship",
            StatusCode::FORBIDDEN,
            IssueType::Security,
        ),
        Decision::Permit(_) => ("permit", StatusCode::OK, IssueType::Informational),
    };
    ApiError::new(status, issue_type, code, decision.sentence())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mcr_domain::{MergedRecord, NhsNumber};

    #[test]
    fn sources_disagreeing_on_who_this_is_come_first_in_the_operation_outcome() {
        let view = View {
            record: MergedRecord {
                nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
                patient: None,
                patient_url: None,
                sections: Vec::new(),
                sources: Vec::new(),
                unavailable_sections: Vec::new(),
                withheld: true,
                demographics_differ: vec![
                    "The sources disagree on this patient's date of birth.".into(),
                    "The sources disagree on this patient's sex.".into(),
                ],
                location_withheld: false,
            },
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let body = everything(
            &view,
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
            None,
        )
        .unwrap_or_default();
        let bundle: Value = serde_json::from_slice(&body).unwrap_or_default();
        let issues = &bundle["entry"][0]["resource"]["issue"];
        let said: Vec<(&str, &str, &str)> = issues
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        (
                            i["severity"].as_str().unwrap_or(""),
                            i["details"]["coding"][0]["code"].as_str().unwrap_or(""),
                            i["details"]["text"].as_str().unwrap_or(""),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            &said[..2],
            [
                (
                    "warning",
                    "demographics-differ",
                    "The sources disagree on this patient's date of birth."
                ),
                (
                    "warning",
                    "demographics-differ",
                    "The sources disagree on this patient's sex."
                ),
            ],
            "{issues}"
        );
        assert_eq!(said[2].1, "items-withheld", "then the rest: {issues}");
    }

    #[test]
    fn types_a_source_holds_that_the_record_does_not_show_and_forms_its_search_cannot_find_are_named_in_the_operation_outcome(
    ) {
        let source = mcr_domain::SourceOutcome {
            source: mcr_domain::SourceId::parse("community").unwrap_or_else(|_| unreachable!()),
            org_code: mcr_domain::OdsCode::parse("RY4").unwrap_or_else(|_| unreachable!()),
            org_name: "Hertfordshire Community NHS Trust".into(),
            status: SourceStatus::Ok,
            items: 4,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 10,
            warnings: Vec::new(),
            not_shown: vec![mcr_domain::NotShown {
                resource_type: "Goal".into(),
                count: 12,
            }],
            unsearchable: vec![
                mcr_domain::UnsearchableForm::OtherServer,
                mcr_domain::UnsearchableForm::Contained,
            ],
        };
        let view = View {
            record: MergedRecord {
                nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
                patient: None,
                patient_url: None,
                sections: Vec::new(),
                sources: vec![source],
                unavailable_sections: Vec::new(),
                withheld: false,
                demographics_differ: Vec::new(),
                location_withheld: false,
            },
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let body = everything(
            &view,
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
            None,
        )
        .unwrap_or_default();
        let bundle: Value = serde_json::from_slice(&body).unwrap_or_default();
        let issues = bundle["entry"][0]["resource"]["issue"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let not_shown = issues
            .iter()
            .find(|i| i["details"]["coding"][0]["code"] == "types-not-shown")
            .unwrap_or_else(|| panic!("no types-not-shown issue: {issues:?}"));
        assert_eq!(not_shown["severity"], "warning");
        assert_eq!(not_shown["code"], "incomplete");
        assert_eq!(
            not_shown["details"]["text"],
            "Not shown: 12 Goal resources from Hertfordshire Community NHS Trust (this record has no section for them; ask Hertfordshire Community NHS Trust if you need them)."
        );
        assert_eq!(not_shown["expression"][0], "community");
        let unsearchable = issues
            .iter()
            .find(|i| i["details"]["coding"][0]["code"] == "references-not-searchable")
            .unwrap_or_else(|| panic!("no references-not-searchable issue: {issues:?}"));
        assert_eq!(unsearchable["severity"], "warning");
        assert_eq!(
            unsearchable["details"]["text"],
            "Hertfordshire Community NHS Trust's search cannot find items that name the patient by another server's address or inside the item; any such items are not shown."
        );
        assert_eq!(unsearchable["expression"][0], "community");
    }

    /// A view of `n` items in each of two sections, from two sources.
    pub(crate) fn view_of(n: usize) -> View {
        let item = |section: mcr_domain::Section, i: usize| RecordItem {
            section,
            class: mcr_domain::DataClass::Results,
            resource_type: "Observation".into(),
            code: None,
            display: format!("Result {i}"),
            detail: None,
            status: None,
            date: None,
            sources: ["gp", "acute"]
                .iter()
                .map(|s| mcr_domain::ItemSource {
                    source: mcr_domain::SourceId::parse(s).unwrap_or_else(|_| unreachable!()),
                    org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
                    org_name: format!("{s} \"organisation\""),
                    full_url: format!("https://{s}/Observation/{i}"),
                    recorded: None,
                })
                .collect(),
            discrepancy: None,
            resource: mcr_domain::SourceJson::from_value(
                &json!({"resourceType": "Observation", "id": i.to_string(), "note": [{"text": "é \u{2028} \\"}]}),
            ),
        };
        View {
            record: MergedRecord {
                nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
                patient: Some(json!({"resourceType": "Patient", "id": "p1"})),
                patient_url: Some("https://gp/Patient/p1".into()),
                sections: vec![
                    (
                        mcr_domain::Section::Problems,
                        (0..n)
                            .map(|i| item(mcr_domain::Section::Problems, i))
                            .collect(),
                    ),
                    (mcr_domain::Section::Allergies, Vec::new()),
                    (
                        mcr_domain::Section::Results,
                        (n..2 * n)
                            .map(|i| item(mcr_domain::Section::Results, i))
                            .collect(),
                    ),
                ],
                sources: Vec::new(),
                unavailable_sections: Vec::new(),
                withheld: true,
                demographics_differ: Vec::new(),
                location_withheld: false,
            },
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        }
    }

    /// Written a few bytes at a time, a Bundle (whole or one page) is byte for byte the one
    /// written at once, and is the record: every item once, with its Provenance, in order.
    #[test]
    fn a_bundle_written_in_parts_is_the_bundle_written_whole() {
        let view = view_of(7);
        let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
        let page = |offset, count| Page {
            offset,
            count,
            url: "https://mcr/fhir/Patient/9434765919/$everything".into(),
        };
        for page in [
            None,
            Some(page(0, 5)),
            Some(page(5, 5)),
            Some(page(12, 5)),
            Some(page(40, 5)),
            Some(page(3, 0)),
        ] {
            let whole = everything(&view, now, page.as_ref()).unwrap_or_default();
            for part in [1, 300, 4096] {
                let mut writer = BundleWriter::new(&view, now, page.clone());
                let mut parts = Vec::new();
                let mut calls = 0;
                loop {
                    let mut out = Vec::new();
                    let done = writer.write(&view, &mut out, part).unwrap_or(true);
                    parts.extend_from_slice(&out);
                    calls += 1;
                    if done || calls > 1_000 {
                        break;
                    }
                }
                assert_eq!(
                    String::from_utf8_lossy(&parts),
                    String::from_utf8_lossy(&whole),
                    "{page:?} in parts of {part} bytes"
                );
                if part == 1 {
                    let (offset, count) = page.as_ref().map_or((0, 14), |p| (p.offset, p.count));
                    let items = (offset + count).min(14).saturating_sub(offset);
                    assert_eq!(calls, items + 2, "the head, each item, then the outcome");
                }
            }
            let bundle: Value = serde_json::from_slice(&whole).unwrap_or_default();
            let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
            let (offset, count) = page.as_ref().map_or((0, 14), |p| (p.offset, p.count));
            let ids: Vec<&str> = entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] == "Observation")
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect();
            let expected: Vec<String> = (offset.min(14)..(offset + count).min(14))
                .map(|i| i.to_string())
                .collect();
            assert_eq!(ids, expected, "{page:?}");
            assert_eq!(bundle["total"], 14);
            assert_eq!(
                entries.first().map(|e| &e["resource"]["resourceType"]),
                Some(&json!("Patient"))
            );
            assert_eq!(
                entries.last().map(|e| &e["resource"]["resourceType"]),
                Some(&json!("OperationOutcome"))
            );
            let provenances = entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] == "Provenance")
                .count();
            assert_eq!(provenances, ids.len(), "one Provenance per item");
        }
    }
}
