//! The four source systems' shares of the region: which people each holds, each one's
//! `Patient` records as that system writes them (its own local ids, its spelling of names,
//! the NHS number where it has one), and the matching cases planted among them. Clinical
//! resources are generated on demand by [`SourceSlice::resources`] (`clinical.rs`).

use crate::pdf;
use crate::{history_start, mix, rng_for, Person, REGISTRATION_DETAILS};
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, OdsCode, OrgKind, Organisation, SourceId};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Which of the four kinds of source system a slice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Gp,
    Acute,
    Community,
    SocialCare,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Gp,
        SourceKind::Acute,
        SourceKind::Community,
        SourceKind::SocialCare,
    ];

    pub fn id(self) -> &'static str {
        match self {
            SourceKind::Gp => "gp",
            SourceKind::Acute => "acute",
            SourceKind::Community => "community",
            SourceKind::SocialCare => "socialcare",
        }
    }

    /// Resource types this kind of source holds (besides Patient).
    pub fn resource_types(self) -> &'static [&'static str] {
        match self {
            SourceKind::Gp => &[
                "Condition",
                "MedicationStatement",
                "AllergyIntolerance",
                "Observation",
                "Encounter",
                "Flag",
            ],
            SourceKind::Acute => &[
                "Encounter",
                "Condition",
                "MedicationStatement",
                "AllergyIntolerance",
                "Observation",
                "DocumentReference",
                "ServiceRequest",
                "Procedure",
                "Appointment",
            ],
            SourceKind::Community => &[
                "Encounter",
                "Condition",
                "CarePlan",
                "Observation",
                "EpisodeOfCare",
                "Flag",
                "Immunization",
                "CareTeam",
            ],
            SourceKind::SocialCare => &[
                "CarePlan",
                "RelatedPerson",
                "DocumentReference",
                "EpisodeOfCare",
                "Flag",
                "Consent",
            ],
        }
    }

    pub(crate) fn organisation(self) -> Organisation {
        let (code, name, kind) = match self {
            SourceKind::Gp => ("E82000", "Hertfordshire GP Practices", OrgKind::GpPractice),
            SourceKind::Acute => (
                "RWH",
                "East and North Hertfordshire NHS Trust",
                OrgKind::AcuteTrust,
            ),
            SourceKind::Community => (
                "RY4",
                "Hertfordshire Community NHS Trust",
                OrgKind::CommunityTrust,
            ),
            SourceKind::SocialCare => (
                "HCC01",
                "Hertfordshire County Council Adult Care Services",
                OrgKind::LocalAuthoritySocialCare,
            ),
        };
        Organisation {
            code: OdsCode::parse(code).expect("source ODS codes are constants in the right shape"),
            name: name.to_owned(),
            kind,
            member: true,
            suspended: false,
        }
    }

    /// The identifier system of this source's own patient number.
    pub fn mrn_system(self) -> &'static str {
        match self {
            SourceKind::Gp => "https://fhir.hertsgp.example.nhs.uk/Id/patient-number",
            SourceKind::Acute => "https://fhir.enherts-tr.nhs.uk/Id/mrn",
            SourceKind::Community => "https://fhir.hct.nhs.uk/Id/patient-id",
            SourceKind::SocialCare => "https://fhir.hertfordshire.gov.uk/Id/person-id",
        }
    }

    fn tag(self) -> u64 {
        match self {
            SourceKind::Gp => 1,
            SourceKind::Acute => 2,
            SourceKind::Community => 3,
            SourceKind::SocialCare => 4,
        }
    }
}

/// A patient as one source holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePatient {
    /// This source's own id for the patient (the FHIR `Patient.id`).
    pub local_id: String,
    /// The FHIR Patient resource.
    pub resource: Value,
    /// `meta.lastUpdated`, RFC 3339.
    pub last_updated: String,
    /// Index into [`crate::Region::people`].
    pub person: usize,
    /// The NHS number on this record, if the source holds one.
    pub nhs_number: Option<NhsNumber>,
}

/// What flags the generator set on a person; drives the clinical content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traits {
    pub acute: bool,
    pub community: bool,
    pub socialcare: bool,
    pub sensitive: bool,
    pub large: bool,
    /// A [`crate::VeryLarge`] record: `large`, scaled further, and copies of GP items at the acute.
    pub very_large: bool,
    pub hostile: bool,
    pub duplicated: bool,
    pub dose_differs: bool,
    pub admitted: bool,
    pub gp_lacks_nhs: bool,
    pub acute_lacks_nhs: bool,
    pub name_differs: bool,
    pub acute_twin: bool,
    pub acute_wrong_nhs: bool,
}

/// What the on-demand generator needs, shared by the four slices.
#[derive(Debug)]
pub(crate) struct Core {
    pub seed: u64,
    pub today: NaiveDate,
    pub people: Vec<Person>,
    pub traits: Vec<Traits>,
    pub practices: Vec<Organisation>,
    /// How many times a typical record a [`crate::VeryLarge`] record is.
    pub very_large_scale: usize,
}

/// The types only a very large record's GP and acute records hold (the GP's laboratory reports
/// and prescriptions, and the trust's copies of half of them): other records and regions
/// without a very large record are as they were.
pub(crate) const VERY_LARGE_TYPES: [&str; 2] = ["DiagnosticReport", "MedicationRequest"];

/// One source system's share of the region.
#[derive(Debug, Clone)]
pub struct SourceSlice {
    pub id: SourceId,
    pub kind: SourceKind,
    pub organisation: Organisation,
    /// Resource types held, `Patient` first.
    pub resource_types: Vec<&'static str>,
    pub(crate) patients: Vec<SourcePatient>,
    pub(crate) by_local_id: HashMap<String, usize>,
    pub(crate) core: Arc<Core>,
}

impl SourceSlice {
    /// Patients held, in local-id order of registration (stable).
    pub fn patients(&self) -> &[SourcePatient] {
        &self.patients
    }

    pub fn patient(&self, local_id: &str) -> Option<&SourcePatient> {
        self.by_local_id
            .get(local_id)
            .and_then(|i| self.patients.get(*i))
    }

    /// The synthetic person behind one of this source's patients.
    pub fn person(&self, local_id: &str) -> Option<&Person> {
        self.patient(local_id)
            .and_then(|p| self.core.people.get(p.person))
    }

    /// A GP practice of the region, by its ODS code (a patient's registered practice).
    pub fn practice(&self, code: &OdsCode) -> Option<&Organisation> {
        self.core.practices.iter().find(|o| &o.code == code)
    }

    /// The region's "today" (for dating a CapabilityStatement and the like).
    pub fn today(&self) -> NaiveDate {
        self.core.today
    }

    pub fn holds_type(&self, resource_type: &str) -> bool {
        self.resource_types.contains(&resource_type)
    }

    /// The content of `Binary/{id}`: the PDF a `DocumentReference` of the same id names
    /// (`attachment.url` = `Binary/{id}`), made from the reference's title and date.
    pub fn binary(&self, id: &str) -> Option<(&'static str, Vec<u8>)> {
        let (local, _) = id.rsplit_once('-')?;
        let doc = if self.kind == SourceKind::Gp {
            self.practice_documents(local)
        } else {
            self.resources(local, "DocumentReference")
        }
        .into_iter()
        .find(|r| r["id"] == id)?;
        let att = doc.pointer("/content/0/attachment")?;
        if att.get("url")?.as_str()? != format!("Binary/{id}") {
            return None;
        }
        let title = doc["description"].as_str().unwrap_or("Document");
        let date = doc["date"].as_str().unwrap_or("").get(..10).unwrap_or("");
        let from = doc["custodian"]["display"].as_str().unwrap_or("the source");
        let referral = doc.pointer("/type/coding/0/code") == Some(&Value::from("3457005"));
        let lines = if referral {
            vec![
                format!("Date: {date}"),
                format!("From: {from}"),
                String::new(),
                "Thank you for seeing this patient, referred for a specialist opinion.".to_owned(),
                "Current medication and problems are in the shared record.".to_owned(),
            ]
        } else {
            vec![
                format!("Date: {date}"),
                format!("From: {from}"),
                String::new(),
                "Admitted and treated; discharged home with a plan for follow-up.".to_owned(),
                "Please continue current medication and review in primary care in two weeks."
                    .to_owned(),
            ]
        };
        Some(("application/pdf", pdf::letter(title, &lines)))
    }

    /// Every clinical resource held for this patient (all types except Patient).
    pub fn resource_count(&self, local_id: &str) -> usize {
        self.resource_types
            .iter()
            .filter(|t| **t != "Patient")
            .map(|t| self.resources(local_id, t).len())
            .sum()
    }
}

fn holds(kind: SourceKind, t: &Traits) -> bool {
    match kind {
        SourceKind::Gp => true,
        SourceKind::Acute => t.acute,
        SourceKind::Community => t.community,
        SourceKind::SocialCare => t.socialcare,
    }
}

pub(crate) fn local_id(kind: SourceKind, seed: u64, i: usize) -> String {
    let i = i as u64;
    match kind {
        SourceKind::Gp => format!("GP-{:06}", i + 1),
        SourceKind::Acute => {
            // 7919 is coprime with 26 * 10^5, so this is a permutation of the id space.
            let x = (i * 7919 + mix(seed, &[2]) % 2_600_000) % 2_600_000;
            let letter = char::from(b'A' + u8::try_from(x / 100_000).expect("below 26"));
            format!("RWH-{letter}{:05}", x % 100_000)
        }
        SourceKind::Community => format!("{}", 4_000_000 + (i * 3571) % 5_000_000),
        SourceKind::SocialCare => {
            let a = mix(seed, &[4, i]);
            let b = mix(seed, &[5, i]);
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            )
        }
    }
}

/// `McDonald` -> `Mc Donald`, `O'Brien` -> `OBrien`, `Smith-Jones` -> `Smith Jones`, else upper case.
fn variant_family(f: &str) -> String {
    if let Some(rest) = f.strip_prefix("Mc") {
        format!("Mc {rest}")
    } else if let Some(rest) = f.strip_prefix("Mac") {
        format!("Mac {rest}")
    } else if f.contains('\'') {
        f.replace('\'', "")
    } else if f.contains('-') {
        f.replace('-', " ")
    } else {
        f.to_uppercase()
    }
}

pub(crate) fn timestamp(date: NaiveDate, secs_of_day: u32) -> String {
    let s = secs_of_day % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date.format("%Y-%m-%d"),
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

pub(crate) fn org_reference(org: &Organisation) -> Value {
    json!({
        "type": "Organization",
        "identifier": { "system": OdsCode::SYSTEM, "value": org.code.as_str() },
        "display": org.name,
    })
}

pub(crate) fn build_slice(core: &Arc<Core>, kind: SourceKind) -> SourceSlice {
    let organisation = kind.organisation();
    let mut patients = Vec::new();
    for (p, t) in core.people.iter().zip(core.traits.iter()) {
        if !holds(kind, t) {
            continue;
        }
        let lid = local_id(kind, core.seed, p.index);
        let mut rng = rng_for(core.seed, &[0xFA, kind.tag(), p.index as u64]);
        let updated = core.today - chrono::Duration::days(rng.gen_range(1..1100));
        let last_updated = timestamp(updated, rng.gen_range(28_800..64_800));
        let lacks_nhs = match kind {
            SourceKind::Gp => t.gp_lacks_nhs,
            SourceKind::Acute => t.acute_lacks_nhs,
            _ => false,
        };
        let family = if t.name_differs && matches!(kind, SourceKind::Acute | SourceKind::Community)
        {
            variant_family(&p.family)
        } else {
            p.family.clone()
        };
        let mut identifier = Vec::new();
        if !lacks_nhs {
            identifier.push(json!({
                "extension": [{
                    "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                    "valueCodeableConcept": { "coding": [{
                        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                        "code": "01",
                        "display": "Number present and verified"
                    }]}
                }],
                "system": NhsNumber::SYSTEM,
                "value": p.nhs_number.as_str(),
            }));
        }
        identifier.push(json!({ "system": kind.mrn_system(), "value": lid }));
        let practice = core
            .practices
            .iter()
            .find(|o| o.code == p.gp_practice)
            .cloned()
            .unwrap_or_else(|| organisation.clone());
        let mut resource = json!({
            "resourceType": "Patient",
            "id": lid,
            "meta": { "lastUpdated": last_updated },
            "identifier": identifier,
            "active": true,
            "name": [{ "use": "official", "family": family, "given": p.given }],
            "telecom": [{ "system": "phone", "value": p.phone, "use": "mobile" }],
            "gender": p.gender,
            "birthDate": p.birth_date.format("%Y-%m-%d").to_string(),
            "address": [{
                "use": "home",
                "line": [p.address_line],
                "city": p.town,
                "district": "Hertfordshire",
                "postalCode": p.postcode,
                "country": "GB",
            }],
            "generalPractitioner": [org_reference(&practice)],
        });
        if kind == SourceKind::Gp {
            resource["managingOrganization"] = org_reference(&practice);
            // When the patient registered with the practice (GP Connect's registration
            // details): the GP registration relationship starts here.
            let registered = history_start(p, core.today, 12);
            resource["extension"] = json!([{
                "url": REGISTRATION_DETAILS,
                "extension": [{
                    "url": "registrationPeriod",
                    "valuePeriod": { "start": registered.format("%Y-%m-%d").to_string() },
                }],
            }]);
        }
        patients.push(SourcePatient {
            local_id: lid,
            resource,
            last_updated,
            person: p.index,
            nhs_number: (!lacks_nhs).then(|| p.nhs_number.clone()),
        });
    }
    if kind == SourceKind::Acute {
        patients.extend(matching_cases(core));
    }
    let by_local_id = patients
        .iter()
        .enumerate()
        .map(|(i, p)| (p.local_id.clone(), i))
        .collect();
    let mut resource_types = vec!["Patient"];
    resource_types.extend_from_slice(kind.resource_types());
    if matches!(kind, SourceKind::Gp | SourceKind::Acute)
        && core.traits.iter().any(|t| t.very_large)
    {
        resource_types.extend_from_slice(&VERY_LARGE_TYPES);
    }
    SourceSlice {
        id: SourceId::parse(kind.id()).expect("source ids are constants in the right shape"),
        kind,
        organisation,
        resource_types,
        patients,
        by_local_id,
        core: Arc::clone(core),
    }
}

/// The acute trust's records for the matching samples: a twin the GP does not hold (no NHS
/// number), and a parent namesake carrying their child's NHS number. Local ids come from the
/// acute id space past every person's own (the region is below a million people here).
fn matching_cases(core: &Core) -> Vec<SourcePatient> {
    let mut out = Vec::new();
    let mut local_twins = true;
    for (p, t) in core.people.iter().zip(core.traits.iter()) {
        if !(t.acute_twin || t.acute_wrong_nhs) {
            continue;
        }
        if t.acute_twin && std::mem::take(&mut local_twins) {
            out.extend(local_twin_records(core, p));
            out.push(unreadable_record(core, p));
        }
        let lid = local_id(SourceKind::Acute, core.seed, p.index + 1_200_000);
        let mut rng = rng_for(core.seed, &[0xFB, p.index as u64]);
        let last_updated = timestamp(
            core.today - chrono::Duration::days(rng.gen_range(1..400)),
            36_000,
        );
        let mut identifier =
            vec![json!({ "system": SourceKind::Acute.mrn_system(), "value": lid })];
        let (given, gender, birth) = if t.acute_twin {
            let (names, gender) = if p.gender == "male" {
                (["Amira", "Louise"], "female")
            } else {
                (["Amir", "Louis"], "male")
            };
            let given = names
                .into_iter()
                .find(|n| !p.given.iter().any(|g| g == n))
                .unwrap_or("Alex");
            (vec![given.to_owned()], gender, p.birth_date)
        } else {
            identifier.insert(
                0,
                json!({ "system": NhsNumber::SYSTEM, "value": p.nhs_number.as_str() }),
            );
            let born = p.birth_date - chrono::Duration::days(365 * 29 + 40);
            (p.given.clone(), p.gender, born)
        };
        let resource = json!({
            "resourceType": "Patient",
            "id": lid,
            "meta": { "lastUpdated": last_updated },
            "identifier": identifier,
            "active": true,
            "name": [{ "use": "official", "family": p.family, "given": given }],
            "gender": gender,
            "birthDate": birth.format("%Y-%m-%d").to_string(),
            "address": [{
                "use": "home",
                "line": [p.address_line],
                "city": p.town,
                "postalCode": p.postcode,
                "country": "GB",
            }],
        });
        out.push(SourcePatient {
            local_id: lid,
            resource,
            last_updated,
            person: p.index,
            nhs_number: t.acute_wrong_nhs.then(|| p.nhs_number.clone()),
        });
    }
    out
}

/// The acute local ids of the twins [`crate::Samples::acute_local_twins`] names, past the other
/// matching cases' ids.
pub(crate) fn local_twin_ids(seed: u64, index: usize) -> [String; 2] {
    [1_300_000, 1_400_000].map(|past| local_id(SourceKind::Acute, seed, index + past))
}

/// The acute local id of the record [`crate::Samples::acute_unreadable`] names, past the
/// local twins' ids.
pub(crate) fn unreadable_id(seed: u64, index: usize) -> String {
    local_id(SourceKind::Acute, seed, index + 1_500_000)
}

/// An acute record, with no NHS number, whose birth date is a month and a year (`1957-03`: a
/// FHIR date, but not a whole one): the index cannot match it, and lists it for the people
/// who check matching. Its id is past `p`'s in the acute id space; nothing else of `p` is its.
fn unreadable_record(core: &Core, p: &Person) -> SourcePatient {
    let demographics = json!({
        "name": [{ "use": "official", "family": "Unwin-Castell", "given": ["Dorothy"] }],
        "gender": "female",
        "birthDate": "1957-03",
        "address": [{ "use": "home", "line": ["3 Mill Lane"], "city": "Knebworth",
                      "postalCode": "SG3 6QA", "country": "GB" }],
    });
    acute_without_number(core, p, unreadable_id(core.seed, p.index), 12, demographics)
}

/// Two acute records, with no NHS number, of twins the GP does not hold (a family name and a
/// postcode district, Knebworth's SG3, no synthetic GP patient has): the matching pass makes a
/// local identity of the first and sends the second to review beside it. Their ids are past
/// `p`'s in the acute id space; nothing else of `p` is theirs.
fn local_twin_records(core: &Core, p: &Person) -> Vec<SourcePatient> {
    let twins = [("Louise", "female"), ("Louis", "male")];
    local_twin_ids(core.seed, p.index)
        .into_iter()
        .zip(twins)
        .map(|(lid, (given, gender))| {
            let demographics = json!({
                "name": [{ "use": "official", "family": "Okonjo-Hartley", "given": [given] }],
                "gender": gender,
                "birthDate": "1990-04-02",
                "address": [{ "use": "home", "line": ["12 Station Road"], "city": "Knebworth",
                              "postalCode": "SG3 6PU", "country": "GB" }],
            });
            acute_without_number(core, p, lid, 30, demographics)
        })
        .collect()
}

/// An acute `Patient` with no NHS number (its hospital number only), last updated `days_ago`,
/// with `demographics` (name, gender, birth date, address) as given; filed under `p`.
fn acute_without_number(
    core: &Core,
    p: &Person,
    lid: String,
    days_ago: i64,
    demographics: serde_json::Value,
) -> SourcePatient {
    let last_updated = timestamp(core.today - chrono::Duration::days(days_ago), 36_000);
    let mut resource = json!({
        "resourceType": "Patient",
        "id": lid,
        "meta": { "lastUpdated": last_updated },
        "identifier": [{ "system": SourceKind::Acute.mrn_system(), "value": lid }],
        "active": true,
    });
    if let (Some(r), serde_json::Value::Object(d)) = (resource.as_object_mut(), demographics) {
        r.extend(d);
    }
    SourcePatient {
        local_id: lid,
        resource,
        last_updated,
        person: p.index,
        nhs_number: None,
    }
}
