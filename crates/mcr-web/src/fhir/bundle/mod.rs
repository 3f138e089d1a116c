//! FHIR shapes of what the gateway returns: our Patient, the merged record as a Bundle with a
//! Provenance per item and an OperationOutcome naming what is missing, and access decisions
//! as OperationOutcomes.

use crate::ApiError;
use axum::http::StatusCode;
use mcr_domain::{NhsNumber, OdsCode, RecordItem, PRACTICE_WITHHELD};
use mcr_fhir::{operation_outcome, IssueType};
use mcr_gateway::{PatientMatch, View};
use mcr_policy::Decision;
use serde_json::{json, Value};

mod outcome;
use outcome::outcome_issues;

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
pub(crate) mod tests;
