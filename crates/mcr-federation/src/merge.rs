//! One record from many answers: each resource is digested as it arrives (tied to the patient,
//! then shown, dropped or withheld as the grant's [`ResourceFilter`] says: the rules are the
//! policy's, not this crate's), then items several sources hold become one item with all their
//! sources. Pure: no I/O, no clock.

use crate::{Received, SourceFetch};
use mcr_domain::{
    DataClass, ItemSource, MergedRecord, NotShown, RecordItem, Section, SourceOutcome, SourceStatus,
};
use mcr_policy::{ResourceFilter, Sight};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Items that are the same across sources share a key: same kind of item, same code, and the
/// same period (what "same period" means depends on the kind of item). Two items with one key
/// from two sources are shown once, with both sources; two from one source stay two.
fn merge_key<J: mcr_fhir::Json>(
    section: Section,
    r: &J,
    summary: &mcr_fhir::Summary,
    code: Option<&(String, String)>,
) -> Option<String> {
    let (system, code) = code?;
    let day = |d: Option<&str>| {
        d.map(|d| d.chars().take(10).collect::<String>())
            .unwrap_or_default()
    };
    let date = summary.date.as_deref();
    Some(match section {
        // The same drug, current, from GP and hospital is one line. A course that has ended
        // is the same only over the same period: two courses of one antibiotic years apart
        // are two courses.
        Section::Medications => {
            let current = matches!(
                summary.status.as_deref(),
                Some("active" | "intended" | "on-hold")
            );
            if current {
                format!("med|{system}|{code}|current")
            } else {
                let end = mcr_fhir::str_at(r, &["effectivePeriod", "end"])
                    .or_else(|| mcr_fhir::str_at(r, &["dispenseRequest", "validityPeriod", "end"]));
                format!("med|{system}|{code}|{}|{}", day(date), day(end))
            }
        }
        Section::Allergies => format!("allergy|{system}|{code}"),
        Section::Problems => format!("problem|{system}|{code}|{}", day(date)),
        Section::Alerts => format!("alert|{system}|{code}"),
        // The same decision (a DNACPR, a power of attorney) held by two sources is one line.
        Section::LegalEndOfLife => format!("legal|{system}|{code}"),
        Section::Immunisations => format!("imm|{system}|{code}|{}", day(date)),
        Section::Procedures => format!("proc|{system}|{code}|{}", day(date)),
        // A measurement is the same if taken at the same instant, however each source writes
        // it (`Z` or `+00:00`, with or without fractions of a second); an observation and a
        // report are never one item.
        Section::Results => format!(
            "result|{}|{system}|{code}|{}",
            mcr_fhir::resource_type(r).unwrap_or_default(),
            date.map(instant).unwrap_or_default()
        ),
        // Encounters, appointments, referrals, documents and care items are each their own.
        Section::Encounters
        | Section::Appointments
        | Section::Referrals
        | Section::Documents
        | Section::CareTeam
        | Section::CareAndSupport => return None,
    })
}

/// A FHIR `dateTime` as the instant it names, in UTC, to compare; a date or a partial date
/// as written.
fn instant(d: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(d) {
        Ok(t) => t
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Err(_) => d.to_owned(),
    }
}

/// Where one source's items come from, for [`digest`].
#[derive(Debug, Clone, Copy)]
pub struct SourceMeta<'a> {
    pub source: &'a mcr_domain::SourceId,
    pub org_code: &'a mcr_domain::OdsCode,
    pub org_name: &'a str,
    pub base_url: &'a str,
    /// The patient's id at this source: what its resources must be about.
    pub local_id: &'a str,
}

/// One resource as the merge keeps it. Each resource is digested as soon as its page is read,
/// so its parsed form lives only that long: a view holds the text of what it shows, never the
/// trees of everything the sources sent.
#[derive(Debug)]
pub enum Digested {
    /// Demographics, for the record's header (only when the grant includes them).
    Patient(Value),
    /// A restricted patient's demographics (`meta.security` R or V), where they are already
    /// removed ([`mcr_fhir::LOCATION_FIELDS`]).
    RestrictedPatient(Value),
    /// An item to show, with the key that finds the same item from other sources.
    Item(Box<(Option<String>, RecordItem)>),
    /// Withheld: sensitive, confidential, or outside the source's sharing agreement.
    Withheld,
    /// Of a class the viewer's role may not see: its section is named as not available.
    NotGranted(Option<Section>),
    /// Not part of the record: outside the role's encounter window, or not a resource.
    Ignored,
    /// Of a resource type the record has no place for: counted by type and named in the
    /// view's warnings, never shown and never ignored in silence.
    NotShown(Box<str>),
    /// Cannot be tied to this patient (no subject, a reference to another server, …):
    /// counted and said, never shown.
    Untied,
    /// About another of the source's patients: a source error, counted and said, never shown
    /// as this patient's.
    AnotherPatient,
}

/// Read one resource from a source: drop what the grant does not cover, withhold what
/// must not be shown, and keep the few fields the merge and the pages need, with the text
/// as sent.
pub fn digest(
    filter: &ResourceFilter<'_>,
    from: &SourceMeta<'_>,
    received: Received<'_>,
) -> Digested {
    let r = received.doc;
    let Some(class) = mcr_fhir::classify(r) else {
        return match mcr_fhir::resource_type(r) {
            // A search's own note about itself is not the patient's record.
            Some("OperationOutcome") | None => Digested::Ignored,
            Some(rt) => Digested::NotShown(rt.into()),
        };
    };
    if class != DataClass::Demographics {
        match mcr_fhir::tie_to_patient(
            r,
            from.local_id,
            filter.grant().patient().as_str(),
            from.base_url,
        ) {
            mcr_fhir::Tie::This => {}
            mcr_fhir::Tie::Another => return Digested::AnotherPatient,
            mcr_fhir::Tie::Unknown => return Digested::Untied,
        }
    }
    let section = Section::for_class(class);
    match filter.sight(from.source, class, r) {
        Sight::Shown => {}
        Sight::NotGranted => return Digested::NotGranted(section),
        Sight::Withheld => return Digested::Withheld,
    }
    if class == DataClass::Demographics {
        if !filter.grant().allows(class) {
            return Digested::Ignored;
        }
        let restricted = mcr_fhir::restricted_label(r);
        let mut value = received.value();
        if !restricted {
            return Digested::Patient(value);
        }
        if let Some(p) = value.as_object_mut() {
            for field in mcr_fhir::LOCATION_FIELDS {
                p.remove(field);
            }
        }
        return Digested::RestrictedPatient(value);
    }
    let Some(section) = section else {
        return Digested::Ignored;
    };
    let summary = mcr_fhir::summarise(r);
    if class == DataClass::Encounters && !filter.encounter_in_window(summary.date.as_deref()) {
        return Digested::Ignored;
    }
    let code = mcr_fhir::first_coding(r, code_field(r)).map(|c| (c.system, c.code));
    let key = merge_key(section, r, &summary, code.as_ref());
    let source = ItemSource {
        source: from.source.clone(),
        org_code: from.org_code.clone(),
        org_name: from.org_name.to_owned(),
        full_url: full_url(from.base_url, r),
        recorded: summary.recorded,
    };
    let item = RecordItem {
        section,
        class,
        resource_type: mcr_fhir::resource_type(r).unwrap_or_default().to_owned(),
        code,
        display: summary.display,
        detail: summary.detail,
        status: summary.status,
        date: summary.date,
        sources: vec![source],
        discrepancy: None,
        // The parsed form is dropped here: only the text is kept for the view.
        resource: received.json(),
    };
    Digested::Item(Box::new((key, item)))
}

/// What one source added to a view, as the merge counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Items kept (before items several sources hold are made one).
    pub kept: usize,
    /// Withheld: sensitive, confidential, or outside the sharing agreement.
    pub withheld: usize,
    /// Could not be tied to this patient.
    pub untied: usize,
    /// About another of the source's patients.
    pub another_patient: usize,
    /// Of types the record has no place for.
    pub not_shown: usize,
}

impl SourceFetch {
    /// What this source adds to the view, as the merge will count it. Known before the
    /// merge, so the view's audit record can be written while the record is merged.
    pub fn counts(&self) -> Counts {
        let Ok(digested) = &self.outcome else {
            return Counts::default();
        };
        digested.iter().fold(Counts::default(), |mut c, d| {
            match d {
                Digested::Item(_) => c.kept += 1,
                Digested::Withheld => c.withheld += 1,
                Digested::Untied => c.untied += 1,
                Digested::AnotherPatient => c.another_patient += 1,
                Digested::NotShown(_) => c.not_shown += 1,
                Digested::Patient(_)
                | Digested::RestrictedPatient(_)
                | Digested::NotGranted(_)
                | Digested::Ignored => {}
            }
            c
        })
    }
}

/// One record from every source's digested answer ([`digest`]): items several
/// sources hold become one item with all their sources, differences flagged.
pub fn merge(filter: &ResourceFilter<'_>, fetches: Vec<SourceFetch>) -> MergedRecord {
    let classes = filter.grant().data_classes();
    let mut items: Vec<RecordItem> = Vec::new();
    // Items by merge key; several for a key when one source holds the same thing twice.
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(fetches.len());
    let mut patient: Option<Value> = None;
    let mut patient_url: Option<String> = None;
    let mut unavailable: BTreeSet<Section> = BTreeSet::new();
    let mut withheld_any = false;
    let mut restricted = false;
    // Each source's Patient, as (organisation, what it says), to compare.
    let mut demographics: Vec<(String, Demographics)> = Vec::new();

    for mut f in fetches {
        let counts = f.counts();
        let (status, digested) = match std::mem::replace(&mut f.outcome, Ok(Vec::new())) {
            Err(reason) => (SourceStatus::Failed(reason), Vec::new()),
            Ok(digested) => match f.cut_short.take() {
                Some(reason) => (SourceStatus::Partial(reason), digested),
                None => (SourceStatus::Ok, digested),
            },
        };
        let mut not_shown: Vec<NotShown> = Vec::new();
        for d in digested {
            let (key, mut item) = match d {
                Digested::Ignored | Digested::Untied | Digested::AnotherPatient => continue,
                Digested::NotShown(rt) => {
                    match not_shown.iter_mut().find(|n| *n.resource_type == *rt) {
                        Some(n) => n.count += 1,
                        None => not_shown.push(NotShown {
                            resource_type: rt.into(),
                            count: 1,
                        }),
                    }
                    continue;
                }
                Digested::NotGranted(section) => {
                    unavailable.extend(section);
                    continue;
                }
                Digested::Withheld => continue,
                Digested::Patient(p) | Digested::RestrictedPatient(p) => {
                    restricted |= mcr_fhir::restricted_label(&p);
                    demographics.push((f.org_name.clone(), Demographics::of(&p)));
                    if patient.is_none() {
                        patient_url = Some(full_url(&f.base_url, &p));
                        patient = Some(p);
                    }
                    continue;
                }
                Digested::Item(b) => *b,
            };
            // The first item with this key that this source is not already on: the same
            // source twice is two entries at that source, not a second opinion, and its
            // second copy pairs with another source's second.
            let existing = key
                .as_ref()
                .and_then(|k| by_key.get(k))
                .and_then(|found| {
                    found
                        .iter()
                        .copied()
                        .find(|i| !items[*i].sources.iter().any(|s| s.source == f.source))
                })
                .map(|i| &mut items[i]);
            if let Some(existing) = existing {
                if existing.detail != item.detail {
                    let note = format!(
                        "Sources differ: {} says “{}”; {} says “{}”",
                        existing.sources[0].org_name,
                        existing.detail.as_deref().unwrap_or("nothing"),
                        f.org_name,
                        item.detail.as_deref().unwrap_or("nothing"),
                    );
                    existing.discrepancy = Some(match existing.discrepancy.take() {
                        Some(prev) => format!("{prev}. {note}"),
                        None => note,
                    });
                }
                existing.sources.append(&mut item.sources);
                continue;
            }
            if let Some(k) = key {
                by_key.entry(k).or_default().push(items.len());
            }
            items.push(item);
        }
        withheld_any |= counts.withheld > 0;
        outcomes.push(SourceOutcome {
            source: f.source.clone(),
            org_code: f.org_code.clone(),
            org_name: f.org_name.clone(),
            status,
            items: counts.kept,
            withheld: counts.withheld,
            untied: counts.untied,
            another_patient: counts.another_patient,
            elapsed_ms: f.elapsed_ms,
            warnings: std::mem::take(&mut f.warnings),
            not_shown: {
                not_shown.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
                not_shown
            },
        });
    }

    let mut sections: Vec<(Section, Vec<RecordItem>)> =
        Section::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for item in items {
        if let Some((_, list)) = sections.iter_mut().find(|(s, _)| *s == item.section) {
            list.push(item);
        }
    }
    for (_, list) in &mut sections {
        // Newest first; undated items last.
        list.sort_by(|a, b| b.date.cmp(&a.date));
    }
    // A section is unavailable only if no granted class maps to it.
    unavailable.retain(|s| !classes.iter().any(|c| Section::for_class(*c) == Some(*s)));
    for s in Section::ALL {
        let granted = classes.iter().any(|c| Section::for_class(*c) == Some(s));
        if !granted {
            unavailable.insert(s);
        }
    }
    let mut record = MergedRecord {
        nhs_number: filter.grant().patient().clone(),
        patient,
        patient_url,
        sections,
        sources: outcomes,
        unavailable_sections: unavailable.into_iter().collect(),
        withheld: withheld_any,
        demographics_differ: differences(&demographics),
        location_withheld: false,
    };
    // One source saying the patient is restricted is enough: the Patient shown (whichever
    // source it came from) is then without their location.
    if restricted {
        record.withhold_location();
    }
    record
}

/// The items of `sections` merged from `fetches` (in the view's order of sources) exactly as
/// [`merge`] merges them, for a page that shows a section once every source that may hold
/// it has answered: with every such source among `fetches`, the section is what the whole
/// record's will be. Each source's status is as [`merge`] gives it; its counts, the
/// demographics and the withheld flag cover only these sections (the whole record's say
/// the rest).
pub fn merge_sections(
    filter: &ResourceFilter<'_>,
    fetches: &[&SourceFetch],
    sections: &BTreeSet<Section>,
) -> MergedRecord {
    let part = fetches
        .iter()
        .map(|f| SourceFetch {
            source: f.source.clone(),
            org_code: f.org_code.clone(),
            org_name: f.org_name.clone(),
            base_url: f.base_url.clone(),
            outcome: match &f.outcome {
                Ok(digested) => Ok(digested
                    .iter()
                    .filter_map(|d| match d {
                        Digested::Item(b) if sections.contains(&b.1.section) => {
                            Some(Digested::Item(b.clone()))
                        }
                        _ => None,
                    })
                    .collect()),
                Err(reason) => Err(reason.clone()),
            },
            elapsed_ms: f.elapsed_ms,
            source_ms: f.source_ms,
            warnings: f.warnings.clone(),
            cut_short: f.cut_short.clone(),
        })
        .collect();
    let mut record = merge(filter, part);
    for (s, items) in &mut record.sections {
        if !sections.contains(s) {
            items.clear();
        }
    }
    record
}

/// What a source's Patient says of who this is: name (family and first given, compared
/// without case, spaces or punctuation, so `O'Brien` and `OBRIEN` agree), date of birth, sex.
#[derive(Debug, Default)]
struct Demographics {
    name: Option<(String, String)>,
    birth_date: Option<String>,
    gender: Option<String>,
}

impl Demographics {
    fn of(p: &Value) -> Self {
        let name = p["name"]
            .as_array()
            .and_then(|names| {
                names
                    .iter()
                    .find(|n| n["use"] == "official")
                    .or_else(|| names.first())
            })
            .map(|n| {
                (
                    n["family"].as_str().unwrap_or("").to_owned(),
                    n["given"][0].as_str().unwrap_or("").to_owned(),
                )
            })
            .filter(|(f, g)| !f.is_empty() || !g.is_empty());
        Self {
            name,
            birth_date: p["birthDate"].as_str().map(str::to_owned),
            gender: p["gender"].as_str().map(str::to_owned),
        }
    }
}

/// Letters only, lower case: how names are compared.
fn letters(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One sentence per detail the sources' Patients disagree on (details a source leaves out
/// are not a disagreement).
fn differences(said: &[(String, Demographics)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |what: &str, values: Vec<(&str, String, String)>| {
        // (organisation, as compared, as shown)
        let mut distinct: Vec<&str> = values.iter().map(|(_, k, _)| k.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            let who: Vec<String> = values
                .iter()
                .map(|(org, _, shown)| format!("{org} says {shown}"))
                .collect();
            out.push(format!(
                "The sources disagree on this patient's {what}: {}. Check that this is the right patient before acting on this record.",
                who.join("; ")
            ));
        }
    };
    compare(
        "name",
        said.iter()
            .filter_map(|(org, d)| {
                let (family, given) = d.name.as_ref()?;
                Some((
                    org.as_str(),
                    format!("{}|{}", letters(family), letters(given)),
                    format!("{given} {family}").trim().to_owned(),
                ))
            })
            .collect(),
    );
    compare(
        "date of birth",
        said.iter()
            .filter_map(|(org, d)| {
                let b = d.birth_date.clone()?;
                Some((org.as_str(), b.clone(), b))
            })
            .collect(),
    );
    compare(
        "sex",
        said.iter()
            .filter_map(|(org, d)| {
                let g = d.gender.clone()?;
                Some((org.as_str(), g.clone(), g))
            })
            .collect(),
    );
    out
}

fn code_field<J: mcr_fhir::Json>(r: &J) -> &'static str {
    match mcr_fhir::resource_type(r) {
        Some("MedicationStatement" | "MedicationRequest" | "MedicationDispense") => {
            "medicationCodeableConcept"
        }
        Some("Encounter" | "DocumentReference" | "EpisodeOfCare") => "type",
        Some("RelatedPerson") => "relationship",
        Some("Immunization") => "vaccineCode",
        Some("CarePlan" | "Consent" | "CareTeam") => "category",
        _ => "code",
    }
}

fn full_url<J: mcr_fhir::Json>(base: &str, r: &J) -> String {
    format!(
        "{}/{}/{}",
        base.trim_end_matches('/'),
        mcr_fhir::resource_type(r).unwrap_or("Resource"),
        mcr_fhir::resource_id(r).unwrap_or("unknown")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::{FailureReason, NhsNumber, OdsCode, SourceId};
    use serde_json::json;

    /// A source's answer before it is digested.
    #[derive(Clone)]
    struct Answer {
        source: SourceId,
        org_code: OdsCode,
        org_name: String,
        base_url: String,
        outcome: Result<Vec<Value>, FailureReason>,
    }

    fn fetch(id: &str, org: &str, resources: Vec<Value>) -> Answer {
        Answer {
            source: SourceId::parse(id).unwrap(),
            org_code: OdsCode::parse(org).unwrap(),
            org_name: format!("{org} org"),
            base_url: format!("http://{id}.example"),
            outcome: Ok(resources),
        }
    }

    /// Digest each answer as the client does, then merge.
    fn merge_answers(filter: &ResourceFilter<'_>, answers: Vec<Answer>) -> MergedRecord {
        merge(filter, digest_answers(filter, answers))
    }

    /// Digest each answer as the client does.
    fn digest_answers(filter: &ResourceFilter<'_>, answers: Vec<Answer>) -> Vec<SourceFetch> {
        answers
            .into_iter()
            .map(|a| {
                let meta = SourceMeta {
                    source: &a.source,
                    org_code: &a.org_code,
                    org_name: &a.org_name,
                    base_url: &a.base_url,
                    local_id: "p",
                };
                let outcome = a.outcome.clone().map(|resources| {
                    resources
                        .into_iter()
                        .map(|v| {
                            let text = v.to_string();
                            let raw: &serde_json::value::RawValue =
                                serde_json::from_str(&text).expect("JSON");
                            let doc = mcr_fhir::Doc::parse(raw.get()).expect("JSON");
                            digest(filter, &meta, Received { doc: &doc, raw })
                        })
                        .collect()
                });
                SourceFetch {
                    source: a.source.clone(),
                    org_code: a.org_code.clone(),
                    org_name: a.org_name.clone(),
                    base_url: a.base_url.clone(),
                    outcome,
                    elapsed_ms: 5,
                    source_ms: None,
                    warnings: Vec::new(),
                    cut_short: None,
                }
            })
            .collect()
    }

    #[test]
    fn a_section_merged_alone_is_the_whole_records_section() {
        let problem = json!({"resourceType": "Condition", "id": "c1", "clinicalStatus":
            {"coding": [{"code": "active"}]}, "code": {"text": "Asthma"},
            "subject": {"reference": "Patient/p"}});
        let answers = vec![
            fetch(
                "gp",
                "E82001",
                vec![med("1", "322236009", "1 daily"), problem],
            ),
            fetch("acute", "RWH", vec![med("9", "322236009", "2 daily")]),
        ];
        let (grant, policy) =
            mcr_testkit::grant(&nhs(), &[DataClass::Medications, DataClass::Problems]);
        let filter = grant.filter(
            &policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        );
        let whole = merge_answers(&filter, answers.clone());
        let fetches = digest_answers(&filter, answers);
        let wanted: BTreeSet<Section> = [Section::Medications].into_iter().collect();
        let part = merge_sections(&filter, &fetches.iter().collect::<Vec<_>>(), &wanted);
        assert_eq!(
            part.items(Section::Medications),
            whole.items(Section::Medications),
            "one line, both sources, the difference flagged, as in the whole record"
        );
        assert_eq!(part.items(Section::Medications).len(), 1);
        assert_eq!(part.items(Section::Medications)[0].sources.len(), 2);
        assert!(part.items(Section::Medications)[0].discrepancy.is_some());
        assert!(
            part.items(Section::Problems).is_empty(),
            "only what was asked"
        );
        assert_eq!(whole.items(Section::Problems).len(), 1);
        assert_eq!(part.sources.len(), 2, "each source's status");
    }

    fn med(id: &str, code: &str, dose: &str) -> Value {
        json!({"resourceType": "MedicationStatement", "id": id, "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": code, "display": "Drug"}]},
            "dosage": [{"text": dose}], "subject": {"reference": "Patient/p"}})
    }

    fn nhs() -> NhsNumber {
        NhsNumber::parse("9434765919").unwrap()
    }

    fn run(classes: &[DataClass], fetches: &[Answer]) -> MergedRecord {
        let (grant, policy) = mcr_testkit::grant(&nhs(), classes);
        merge_answers(
            &grant.filter(
                &policy,
                [],
                mcr_domain::Clock::now(&mcr_domain::SystemClock),
            ),
            fetches.to_vec(),
        )
    }

    #[test]
    fn one_source_labelling_the_patient_restricted_withholds_their_location_from_every_patient() {
        let patient = |restricted: bool| {
            let mut p = json!({"resourceType": "Patient", "id": "p",
                "name": [{"family": "Smythe", "given": ["Janet"]}], "birthDate": "2005-06-16",
                "address": [{"postalCode": "LS1 6AE"}],
                "telecom": [{"system": "phone", "value": "01632960587"}],
                "generalPractitioner": [{"identifier": {"value": "Y12345"}}]});
            if restricted {
                p["meta"] = json!({"security": [{"system":
                    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
            }
            p
        };
        // The unlabelled GP Patient comes first and is the one shown; the hospital's label
        // still restricts it.
        let answers = [
            fetch("gp", "E82001", vec![patient(false)]),
            fetch("acute", "RWH", vec![patient(true)]),
        ];
        let r = run(&[DataClass::Demographics], &answers);
        assert!(r.location_withheld);
        let shown = r.patient.expect("the Patient is shown, without location");
        assert_eq!(shown["birthDate"], "2005-06-16");
        for field in ["address", "telecom", "generalPractitioner"] {
            assert!(shown.get(field).is_none(), "{field}: {shown}");
        }
        assert!(!r.withheld, "nothing else was withheld");

        let r = run(
            &[DataClass::Demographics],
            &[fetch("gp", "E82001", vec![patient(false)])],
        );
        assert!(!r.location_withheld);
        assert!(r.patient.expect("patient").get("address").is_some());
    }

    #[test]
    fn items_that_cannot_be_tied_to_the_patient_are_counted_and_said_never_shown() {
        let with = |id: &str, subject: Value| {
            let mut m = med(id, id, "1 daily");
            m["subject"] = subject;
            m
        };
        let answers = [fetch(
            "gp",
            "E82001",
            vec![
                with("1", json!({"reference": "Patient/p"})),
                with("2", json!({"reference": "http://gp.example/Patient/p"})),
                with(
                    "3",
                    json!({"reference": "http://elsewhere.example/Patient/p"}),
                ),
                with("4", json!({"reference": "Patient/q"})),
                with("5", json!({"display": "no reference"})),
            ],
        )];
        let r = run(&[DataClass::Medications], &answers);
        assert_eq!(
            r.item_count(),
            2,
            "relative and absolute on the same server"
        );
        let s = &r.sources[0];
        assert_eq!((s.items, s.untied, s.another_patient), (2, 2, 1));
        assert_eq!(
            s.not_tied_sentence().as_deref(),
            Some("3 items from E82001 org could not be tied to this patient and are not shown (1 named another patient).")
        );
        let all_lost = [fetch(
            "gp",
            "E82001",
            vec![with(
                "1",
                json!({"reference": "http://elsewhere.example/Patient/p"}),
            )],
        )];
        let r = run(&[DataClass::Medications], &all_lost);
        assert_eq!(
            r.sources[0].not_tied_sentence().as_deref(),
            Some("1 item from E82001 org could not be tied to this patient and is not shown: nothing it sent could be shown.")
        );
    }

    #[test]
    fn types_the_record_has_no_place_for_are_counted_by_type_never_ignored() {
        let goal = |id: &str| {
            json!({"resourceType": "Goal", "id": id, "subject": {"reference": "Patient/p"},
                "description": {"text": "Walk to the shops"}})
        };
        let answers = [fetch(
            "community",
            "RY4",
            vec![
                med("m1", "111", "one daily"),
                goal("g1"),
                goal("g2"),
                json!({"resourceType": "NutritionOrder", "id": "n1", "patient": {"reference": "Patient/p"}}),
                json!({"resourceType": "OperationOutcome", "issue": []}),
            ],
        )];
        let r = run(&DataClass::ALL, &answers);
        let s = &r.sources[0];
        assert_eq!(s.items, 1);
        let counted: Vec<(&str, usize)> = s
            .not_shown
            .iter()
            .map(|n| (n.resource_type.as_str(), n.count))
            .collect();
        assert_eq!(
            counted,
            [("Goal", 2), ("NutritionOrder", 1)],
            "a search's own OperationOutcome is not the record"
        );
        assert_eq!(
            s.not_shown_sentence().as_deref(),
            Some("Not shown: 2 Goal resources, 1 NutritionOrder resource from RY4 org (this record has no section for them; ask RY4 org if you need them).")
        );
    }

    #[test]
    fn a_dnacpr_decision_two_sources_hold_is_one_legal_item_with_both() {
        let dnacpr = |id: &str, start: &str| {
            json!({"resourceType": "Flag", "id": id, "status": "active", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "450476008",
                    "display": "Not for attempted cardiopulmonary resuscitation"}]},
                "period": {"start": start}})
        };
        let r = run(
            &DataClass::ALL,
            &[
                fetch("gp", "GPA", vec![dnacpr("f1", "2026-01-01")]),
                fetch("community", "RY4", vec![dnacpr("f9", "2026-01-01")]),
            ],
        );
        assert!(r.items(Section::Alerts).is_empty());
        let legal = r.items(Section::LegalEndOfLife);
        assert_eq!(legal.len(), 1);
        assert_eq!(legal[0].sources.len(), 2);
        // A role without the class sees the section named as not available, not an empty one.
        let r = run(
            &[DataClass::Alerts],
            &[fetch("gp", "GPA", vec![dnacpr("f1", "2026-01-01")])],
        );
        assert!(r.unavailable_sections.contains(&Section::LegalEndOfLife));
    }

    #[test]
    fn same_drug_from_two_sources_is_one_item_with_both() {
        let r = run(
            &DataClass::ALL,
            &[
                fetch("gp", "GPA", vec![med("m1", "111", "one daily")]),
                fetch("acute", "RWH", vec![med("x9", "111", "one daily")]),
            ],
        );
        let meds = r.items(Section::Medications);
        assert_eq!(meds.len(), 1);
        assert_eq!(meds[0].sources.len(), 2);
        assert_eq!(
            meds[0].sources[1].full_url,
            "http://acute.example/MedicationStatement/x9"
        );
        assert_eq!(meds[0].discrepancy, None);
    }

    fn course(id: &str, start: &str, end: &str) -> Value {
        let mut m = med(id, "222", "three times a day for seven days");
        m["status"] = json!("completed");
        m["effectivePeriod"] = json!({"start": start, "end": end});
        m
    }

    fn observation(id: &str, rt: &str, when: &str, value: f64) -> Value {
        json!({"resourceType": rt, "id": id, "status": "final", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Haemoglobin"}]},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "g/L"}})
    }

    #[test]
    fn a_course_of_a_drug_is_the_same_only_over_the_same_period() {
        let r = run(
            &DataClass::ALL,
            &[
                fetch(
                    "gp",
                    "GPA",
                    vec![
                        course("c1", "2020-01-01", "2020-01-08"),
                        course("c2", "2023-05-01", "2023-05-08"),
                    ],
                ),
                fetch(
                    "acute",
                    "RWH",
                    vec![
                        course("x1", "2023-05-01", "2023-05-08"),
                        course("x2", "2024-02-01", "2024-02-08"),
                    ],
                ),
            ],
        );
        let meds = r.items(Section::Medications);
        let sources: Vec<Vec<&str>> = meds
            .iter()
            .map(|m| m.sources.iter().map(|s| s.full_url.as_str()).collect())
            .collect();
        assert_eq!(meds.len(), 3, "{sources:?}");
        assert!(
            sources.contains(&vec![
                "http://gp.example/MedicationStatement/c2",
                "http://acute.example/MedicationStatement/x1"
            ]),
            "the 2023 course is one: {sources:?}"
        );
    }

    #[test]
    fn a_second_copy_pairs_with_the_other_sources_second_copy() {
        // Two measurements of one code at one instant at each source (two analysers, say):
        // each source's pair stays two items, and each item has both sources.
        let at = "2024-03-01T09:30:00Z";
        let r = run(
            &DataClass::ALL,
            &[
                fetch(
                    "gp",
                    "GPA",
                    vec![
                        observation("o1", "Observation", at, 131.0),
                        observation("o2", "Observation", at, 131.0),
                    ],
                ),
                fetch(
                    "acute",
                    "RWH",
                    vec![
                        observation("a1", "Observation", at, 131.0),
                        observation("a2", "Observation", at, 131.0),
                    ],
                ),
            ],
        );
        let results = r.items(Section::Results);
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|i| i.sources.len() == 2), "{results:?}");
    }

    #[test]
    fn a_measurement_is_the_same_at_the_same_instant_however_it_is_written() {
        let r = run(
            &DataClass::ALL,
            &[
                fetch(
                    "gp",
                    "GPA",
                    vec![
                        observation("o1", "Observation", "2024-03-01T09:30:00Z", 131.0),
                        observation("o2", "Observation", "2024-03-02T09:30:00Z", 128.0),
                        observation("d1", "DiagnosticReport", "2024-03-03T09:30:00Z", 1.0),
                    ],
                ),
                fetch(
                    "acute",
                    "RWH",
                    vec![
                        observation("a1", "Observation", "2024-03-01T10:30:00.000+01:00", 131.0),
                        // Another instant is another measurement.
                        observation("a2", "Observation", "2024-03-02T09:31:00Z", 128.0),
                        // An observation is never one item with a report.
                        observation("a3", "Observation", "2024-03-03T09:30:00Z", 1.0),
                    ],
                ),
            ],
        );
        let results = r.items(Section::Results);
        let merged: Vec<_> = results.iter().filter(|i| i.sources.len() == 2).collect();
        assert_eq!(results.len(), 5, "{results:?}");
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].sources[1].full_url,
            "http://acute.example/Observation/a1"
        );
    }

    #[test]
    fn differing_dose_is_flagged_not_hidden() {
        let r = run(
            &DataClass::ALL,
            &[
                fetch("gp", "GPA", vec![med("m1", "111", "one daily")]),
                fetch("acute", "RWH", vec![med("x9", "111", "two daily")]),
            ],
        );
        let m = &r.items(Section::Medications)[0];
        let note = m.discrepancy.as_deref().unwrap();
        assert!(
            note.contains("one daily") && note.contains("two daily"),
            "{note}"
        );
    }

    #[test]
    fn the_same_drug_twice_from_one_source_stays_two_entries() {
        let r = run(
            &DataClass::ALL,
            &[fetch(
                "gp",
                "GPA",
                vec![med("m1", "111", "a"), med("m2", "111", "a")],
            )],
        );
        let meds = r.items(Section::Medications);
        assert_eq!(meds.len(), 2);
        assert!(meds.iter().all(|m| m.sources.len() == 1));
    }

    #[test]
    fn different_drugs_stay_apart() {
        let r = run(
            &DataClass::ALL,
            &[fetch(
                "gp",
                "GPA",
                vec![med("m1", "111", "a"), med("m2", "222", "b")],
            )],
        );
        assert_eq!(r.items(Section::Medications).len(), 2);
    }

    #[test]
    fn sources_that_disagree_on_who_the_patient_is_are_said() {
        let patient = |family: &str, given: &str, born: &str, sex: &str| {
            json!({"resourceType": "Patient", "id": "p", "birthDate": born, "gender": sex,
                "name": [{"use": "official", "family": family, "given": [given]}]})
        };
        // Spelling and case alone are not a disagreement; a date of birth is.
        let agree = run(
            &DataClass::ALL,
            &[
                fetch(
                    "gp",
                    "GPA",
                    vec![patient("O'Brien", "Ann", "1950-02-01", "female")],
                ),
                fetch(
                    "acute",
                    "RWH",
                    vec![patient("OBRIEN", "ANN", "1950-02-01", "female")],
                ),
            ],
        );
        assert!(
            agree.demographics_differ.is_empty(),
            "{:?}",
            agree.demographics_differ
        );
        let differ = run(
            &DataClass::ALL,
            &[
                fetch(
                    "gp",
                    "GPA",
                    vec![patient("O'Brien", "Ann", "1950-02-01", "female")],
                ),
                fetch(
                    "acute",
                    "RWH",
                    vec![patient("O'Brien", "Ann", "1950-01-02", "female")],
                ),
                fetch(
                    "community",
                    "RY4",
                    vec![patient("Byrne", "Ann", "1950-02-01", "male")],
                ),
            ],
        );
        assert_eq!(
            differ.demographics_differ,
            [
                "The sources disagree on this patient's name: GPA org says Ann O'Brien; RWH org says Ann O'Brien; RY4 org says Ann Byrne. Check that this is the right patient before acting on this record.",
                "The sources disagree on this patient's date of birth: GPA org says 1950-02-01; RWH org says 1950-01-02; RY4 org says 1950-02-01. Check that this is the right patient before acting on this record.",
                "The sources disagree on this patient's sex: GPA org says female; RWH org says female; RY4 org says male. Check that this is the right patient before acting on this record.",
            ]
        );
    }

    #[test]
    fn classes_outside_the_grant_are_dropped_and_named() {
        let r = run(
            &[DataClass::Demographics, DataClass::CareTeam],
            &[fetch(
                "gp",
                "GPA",
                vec![
                    med("m1", "111", "a"),
                    json!({"resourceType": "Patient", "id": "p"}),
                ],
            )],
        );
        assert_eq!(r.item_count(), 0);
        assert!(r.unavailable_sections.contains(&Section::Medications));
        assert!(r.patient.is_some());
        assert!(!r.withheld, "dropping for role is not withholding");
    }

    #[test]
    fn withheld_items_are_counted_but_never_shown() {
        let mut secret = med("m3", "333", "x");
        secret["meta"] =
            json!({"security": [{"system": mcr_policy::V3_CONFIDENTIALITY, "code": "R"}]});
        let r = run(
            &DataClass::ALL,
            &[fetch("gp", "GPA", vec![secret, med("m1", "111", "a")])],
        );
        assert_eq!(r.items(Section::Medications).len(), 1);
        assert!(r.withheld);
        assert_eq!(r.sources[0].withheld, 1);
        assert_eq!(r.sources[0].items, 1);
    }

    #[test]
    fn failed_sources_travel_with_the_record() {
        let mut down = fetch("acute", "RWH", vec![]);
        down.outcome = Err(FailureReason::Timeout { after_ms: 3000 });
        let r = run(
            &DataClass::ALL,
            &[fetch("gp", "GPA", vec![med("m1", "111", "a")]), down],
        );
        let failed: Vec<_> = r.failed_sources().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].source.as_str(), "acute");
    }

    #[test]
    fn a_recent_encounters_window_leaves_out_older_and_undated_ones() {
        let enc = |id: &str, start: Option<&str>| {
            let mut e = json!({"resourceType": "Encounter", "id": id, "status": "finished",
                "class": {"display": "inpatient"}, "subject": {"reference": "Patient/p"}});
            if let Some(s) = start {
                e["period"] = json!({"start": s});
            }
            e
        };
        let (grant, mut policy) = mcr_testkit::grant(&nhs(), &DataClass::ALL);
        policy
            .recent_encounters_days
            .insert(mcr_domain::Role::Clinician, 31);
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-02T12:00:00Z")
            .expect("instant")
            .to_utc();
        let r = merge_answers(
            &grant.filter(&policy, [], now),
            vec![fetch(
                "acute",
                "RWH",
                vec![
                    enc("e1", Some("2026-10-02T10:00:00Z")),
                    enc("e2", Some("2025-01-01")),
                    enc("e3", None),
                ],
            )],
        );
        let shown: Vec<_> = r
            .items(Section::Encounters)
            .iter()
            .map(|i| i.sources[0].full_url.clone())
            .collect();
        assert_eq!(shown, ["http://acute.example/Encounter/e1"]);
        assert!(!r.withheld, "scoping by role is not withholding");
    }

    #[test]
    fn source_sharing_agreement_is_applied() {
        let (grant, policy) = mcr_testkit::grant(&nhs(), &DataClass::ALL);
        let agreement = mcr_policy::SharingAgreement {
            source_org: OdsCode::parse("GPA").unwrap(),
            shares: [(
                mcr_domain::OrgKind::GpPractice,
                [DataClass::Allergies].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
        };
        let r = merge_answers(
            &grant.filter(
                &policy,
                [(SourceId::parse("gp").unwrap(), Some(&agreement))],
                mcr_domain::Clock::now(&mcr_domain::SystemClock),
            ),
            vec![fetch("gp", "GPA", vec![med("m1", "111", "a")])],
        );
        assert_eq!(r.item_count(), 0);
    }
}
