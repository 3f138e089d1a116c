//! One record from many answers: each resource, as a source sent it ([`Received`]), is digested
//! as it arrives (tied to the patient, then shown, dropped or withheld as the grant's
//! [`ResourceFilter`] says: the rules are the policy's, not this crate's) into each source's
//! answer ([`SourceFetch`]); then items several sources hold become one item with all their
//! sources. Pure: no I/O, no clock.

use mcr_domain::{
    DataClass, FailureReason, ItemSource, MergedRecord, NotShown, RecordItem, Section, SourceId,
    SourceJson, SourceOutcome, SourceStatus,
};
use mcr_fhir::Doc;
use mcr_policy::{ResourceFilter, Sight};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

mod demographics;
mod keys;
#[cfg(test)]
mod tests;

use demographics::{differences, Demographics};
use keys::merge_key;

/// What one source answered for one view.
#[derive(Debug)]
pub struct SourceFetch {
    pub source: SourceId,
    pub org_code: mcr_domain::OdsCode,
    pub org_name: String,
    pub base_url: String,
    /// The resources as sent, each digested as it arrived, or why there are none.
    pub outcome: Result<Vec<Digested>, FailureReason>,
    pub elapsed_ms: u64,
    /// The source's own handling time for this view, as it reported it (`Server-Timing`), along
    /// its slowest concurrent search, in milliseconds; `None` when it did not say or failed.
    pub source_ms: Option<f64>,
    /// What the source said about its answer, for the banner (GP Connect list warnings).
    pub warnings: Vec<String>,
    /// The source sent part of the record, then stopped for this reason (its deadline or the
    /// size cap): what arrived is in `outcome`, shown, and the view says the rest is missing.
    pub cut_short: Option<FailureReason>,
    /// The forms of patient reference this source's search could not be asked for (see
    /// [`crate::PatientSearch`]): said in the view and counted in the audit record.
    pub unsearchable: Vec<mcr_domain::UnsearchableForm>,
}

/// One resource as a source sent it: read, for the checks and the merge, and the text it came
/// as, for the API to return unchanged. Both borrow the page being read; what a digest keeps
/// it copies ([`Received::json`], [`Received::value`]), so resources dropped by the grant or
/// withheld are never copied at all.
#[derive(Clone, Copy)]
pub struct Received<'a> {
    pub doc: &'a Doc<'a>,
    pub raw: &'a RawValue,
}

impl Received<'_> {
    /// The text as received, kept.
    pub fn json(&self) -> SourceJson {
        SourceJson::from_raw(self.raw.to_owned())
    }

    /// A parsed copy (for the few resources kept whole).
    pub fn value(&self) -> Value {
        Value::from(self.doc)
    }
}

impl std::fmt::Debug for Received<'_> {
    /// Clinical data: only its size, never its content, may reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Received({} bytes)", self.raw.get().len())
    }
}

/// What the view keeps of each resource a source sends ([`crate::digest`]).
pub type Digest<'a> = dyn Fn(Received<'_>) -> Digested + Send + Sync + 'a;

/// Where one source's items come from, for [`digest`].
#[derive(Debug, Clone, Copy)]
pub struct SourceMeta<'a> {
    pub source: &'a mcr_domain::SourceId,
    pub org_code: &'a mcr_domain::OdsCode,
    pub org_name: &'a str,
    pub base_url: &'a str,
    /// The patient's id at this source: what its resources must be about.
    pub local_id: &'a str,
    /// The patient's addresses at the region's other sources, as the index links them: an
    /// item naming one of them is this patient's too ([`mcr_fhir::tie_to_patient`]).
    pub elsewhere: &'a [mcr_fhir::PatientAt<'a>],
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
    /// An item already merged into a part of the record handed over before the whole
    /// ([`take_sections`]): counted as kept, never held or merged again.
    HandedOver,
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
            from.elsewhere,
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
    let code = mcr_fhir::codings_at(r, code_field(r))
        .next()
        .map(|c| c.system_and_code());
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
    /// This source's Patient carries a restricted (R/V) security label: the patient's location
    /// and practice are withheld from the view, whatever the index knew.
    pub fn labels_patient_restricted(&self) -> bool {
        self.outcome.as_ref().is_ok_and(|d| {
            d.iter()
                .any(|d| matches!(d, Digested::RestrictedPatient(_)))
        })
    }

    /// What this source adds to the view, as the merge will count it. Known before the
    /// merge, so the view's audit record can be written while the record is merged.
    pub fn counts(&self) -> Counts {
        let Ok(digested) = &self.outcome else {
            return Counts::default();
        };
        digested.iter().fold(Counts::default(), |mut c, d| {
            match d {
                Digested::Item(_) | Digested::HandedOver => c.kept += 1,
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
    // Sized once: a record of thousands of items would otherwise be copied as it grows.
    let held: usize = fetches
        .iter()
        .filter_map(|f| f.outcome.as_ref().ok())
        .map(|d| d.iter().filter(|d| matches!(d, Digested::Item(_))).count())
        .sum();
    let mut items: Vec<RecordItem> = Vec::with_capacity(held);
    // Items by merge key; several for a key when one source holds the same thing twice.
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::with_capacity(held);
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
                Digested::Ignored
                | Digested::Untied
                | Digested::AnotherPatient
                | Digested::HandedOver => continue,
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
            unsearchable: std::mem::take(&mut f.unsearchable),
        });
    }

    let mut sizes = [0; Section::ALL.len()];
    for item in &items {
        if let Some(at) = Section::ALL.iter().position(|s| *s == item.section) {
            sizes[at] += 1;
        }
    }
    let mut sections: Vec<(Section, Vec<RecordItem>)> = Section::ALL
        .iter()
        .zip(sizes)
        .map(|(s, n)| (*s, Vec::with_capacity(n)))
        .collect();
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

/// The items of `sections`, taken out of `fetches` (in the view's order of sources) and merged
/// exactly as [`merge`] merges them, for a page that shows a section once every source that
/// may hold it has answered: with every such source among `fetches`, the section is what the
/// whole record's would be. Each item taken leaves [`Digested::HandedOver`] in its place, so
/// the whole record merged afterwards counts it but neither holds nor merges it again. Each
/// source's status is as [`merge`] gives it; its counts, the demographics and the withheld
/// flag cover only these sections (the whole record's say the rest).
pub fn take_sections(
    filter: &ResourceFilter<'_>,
    fetches: &mut [&mut SourceFetch],
    sections: &BTreeSet<Section>,
) -> MergedRecord {
    let part = fetches
        .iter_mut()
        .map(|f| SourceFetch {
            source: f.source.clone(),
            org_code: f.org_code.clone(),
            org_name: f.org_name.clone(),
            base_url: f.base_url.clone(),
            outcome: match &mut f.outcome {
                Ok(digested) => Ok(digested
                    .iter_mut()
                    .filter(|d| matches!(d, Digested::Item(b) if sections.contains(&b.1.section)))
                    .map(|d| std::mem::replace(d, Digested::HandedOver))
                    .collect()),
                Err(reason) => Err(reason.clone()),
            },
            elapsed_ms: f.elapsed_ms,
            source_ms: f.source_ms,
            warnings: f.warnings.clone(),
            cut_short: f.cut_short.clone(),
            unsearchable: f.unsearchable.clone(),
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
    [
        base.trim_end_matches('/'),
        mcr_fhir::resource_type(r).unwrap_or("Resource"),
        mcr_fhir::resource_id(r).unwrap_or("unknown"),
    ]
    .join("/")
}
