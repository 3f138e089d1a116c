//! A deterministic synthetic region: a Hertfordshire population, its GP registrations, and each
//! source system's FHIR R4 records as that system would hold them.
//!
//! This crate owns made-up data only. Everything is derived from a seed, so the same
//! [`SynthConfig`] always gives the same region, byte for byte. Clinical resources are generated
//! on demand from `(seed, person, source, type)` by [`SourceSlice::resources`], never held for
//! the whole population. It must never do I/O, read the wall clock, or contain a real person.
//!
//! Where each resource type keeps its code: `Condition.code`, `AllergyIntolerance.code`,
//! `Observation.code`, `Flag.code`, `MedicationStatement.medicationCodeableConcept`,
//! `Encounter.type[0]`, `DocumentReference.type`, `CarePlan.category[0]`, `EpisodeOfCare.type[0]`,
//! `RelatedPerson.relationship[0]`; always in `coding[0]` with system, code and display.

mod clinical;
pub mod codes;
mod names;
pub mod pdf;
mod population;

use chrono::{Datelike, NaiveDate};
use mcr_domain::demographics::{normalise_name, normalise_postcode};
use mcr_domain::{NhsNumber, OdsCode, OrgKind, Organisation, SourceId};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub use population::demographics;
pub(crate) use population::{mix, practices, rng_for, str_tag, TAG_MEMBERSHIP, TAG_SAMPLES};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    pub seed: u64,
    pub patients: usize,
    /// The region's "today": every date generated is on or before it.
    pub today: NaiveDate,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 2017,
            patients: 10_000,
            today: NaiveDate::from_ymd_opt(2026, 11, 24).expect("2026-11-24 is a valid date"),
        }
    }
}

/// One synthetic person, as the region's population register would know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Position in [`Region::people`] (and in the output of [`demographics`]).
    pub index: usize,
    pub nhs_number: NhsNumber,
    pub family: String,
    pub given: Vec<String>,
    pub birth_date: NaiveDate,
    /// `male`, `female`, `other` or `unknown` (FHIR administrative gender).
    pub gender: &'static str,
    pub postcode: String,
    pub address_line: String,
    pub town: &'static str,
    /// A number from Ofcom's range reserved for drama (07700 900xxx).
    pub phone: String,
    pub gp_practice: OdsCode,
}

impl Person {
    /// Age in whole years on `today`.
    pub fn age_on(&self, today: NaiveDate) -> u32 {
        today.years_since(self.birth_date).unwrap_or(0)
    }

    /// The key demographic matching uses: normalised family, first given name, birth date,
    /// normalised postcode.
    pub fn match_key(&self) -> (String, String, NaiveDate, String) {
        (
            normalise_name(&self.family),
            normalise_name(self.given.first().map_or("", String::as_str)),
            self.birth_date,
            normalise_postcode(&self.postcode),
        )
    }
}

/// A whole synthetic region.
#[derive(Debug, Clone)]
pub struct Region {
    pub seed: u64,
    pub today: NaiveDate,
    pub people: Vec<Person>,
    /// `gp`, `acute`, `community`, `socialcare`, in that order.
    pub sources: Vec<Arc<SourceSlice>>,
    pub samples: Samples,
    pub gp_practices: Vec<Organisation>,
}

impl Region {
    pub fn source(&self, id: &str) -> Option<&Arc<SourceSlice>> {
        self.sources.iter().find(|s| s.id.as_str() == id)
    }

    pub fn person(&self, nhs_number: &NhsNumber) -> Option<&Person> {
        self.people.iter().find(|p| &p.nhs_number == nhs_number)
    }

    /// The items the GP system and another source both hold for this patient, each as the
    /// GP's id and the other's: the acute trust's copies in a [`VeryLarge`] record
    /// (Observation, Condition, MedicationStatement, DiagnosticReport with its results,
    /// MedicationRequest); the allergy every acute record shares
    /// with the GP record (the same code); the problem and medicine a `duplicated_items`
    /// patient's acute record shares; the long-term problems (at most two) the community
    /// trust records with the GP's onset. Empty when the GP does not hold the patient.
    pub fn copies(&self, nhs_number: &NhsNumber) -> Vec<Copy> {
        let held = |id: &str| {
            let slice = self.source(id)?;
            let sp = slice
                .patients()
                .iter()
                .find(|p| p.nhs_number.as_ref() == Some(nhs_number))?;
            Some((slice, sp))
        };
        let Some((gp, gp_sp)) = held("gp") else {
            return Vec::new();
        };
        let core = &gp.core;
        let id = |r: &Value| r["id"].as_str().unwrap_or_default().to_owned();
        let mut out = Vec::new();
        let mut pair = |rt: &'static str, g: &Value, source: &'static str, c: &Value| {
            out.push(Copy {
                resource_type: rt,
                gp_id: id(g),
                source,
                id: id(c),
            });
        };
        let traits = core.traits.get(gp_sp.person).copied().unwrap_or_default();
        if let Some((acute, sp)) = held("acute") {
            for rt in clinical::COPIED_TYPES {
                let gp_items = gp.resources(&gp_sp.local_id, rt);
                let acute_items = acute.resources(&sp.local_id, rt);
                let mut copied = clinical::copied_from_gp(core, sp.person, rt, &gp_items);
                if traits.duplicated && rt != "Observation" && !gp_items.is_empty() {
                    // The first long-term problem and the first medicine, recorded again.
                    copied = vec![0];
                }
                // The acute trust's copies come first in its list, in the GP's order.
                for (g, a) in copied.iter().zip(&acute_items) {
                    pair(rt, &gp_items[*g], "acute", a);
                }
            }
            let gp_allergies = gp.resources(&gp_sp.local_id, "AllergyIntolerance");
            for a in acute.resources(&sp.local_id, "AllergyIntolerance") {
                let code = a.pointer("/code/coding/0/code");
                if let Some(g) = gp_allergies
                    .iter()
                    .find(|g| g.pointer("/code/coding/0/code") == code)
                {
                    pair("AllergyIntolerance", g, "acute", &a);
                }
            }
        }
        if let Some((community, sp)) = held("community") {
            let gp_items = gp.resources(&gp_sp.local_id, "Condition");
            let community_items = community.resources(&sp.local_id, "Condition");
            let chronic = clinical::chronic_problems(core, sp.person);
            for (g, c) in gp_items.iter().zip(&community_items).take(chronic.min(2)) {
                pair("Condition", g, "community", c);
            }
        }
        out
    }
}

/// Patients chosen to exercise particular cases. The lists are disjoint except where noted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Samples {
    /// Held by all four sources.
    pub all_four: Vec<NhsNumber>,
    /// Held by the GP system only.
    pub gp_only: Vec<NhsNumber>,
    /// The GP record lacks the NHS number; the acute record has it; name + birth date +
    /// postcode is unique in the region.
    pub demographics_only: Vec<NhsNumber>,
    /// The acute record lacks the NHS number (the GP record has it); name + birth date +
    /// postcode is unique in the region.
    pub no_nhs_number_in_acute: Vec<NhsNumber>,
    /// The acute (and community, if held) record spells the name differently (`Mc Donald`,
    /// `OBRIEN`, a hyphen dropped, upper case) but carries the NHS number.
    pub name_differs: Vec<NhsNumber>,
    /// The same problem (SNOMED code and onset date) and the same medicine (dm+d code) are held
    /// by both GP and acute.
    pub duplicated_items: Vec<NhsNumber>,
    /// The subset of `duplicated_items` where the two sources' dose text differs.
    pub dose_discrepancy: Vec<NhsNumber>,
    /// Items in legally restricted categories (HIV, STIs, IVF, termination, gender
    /// reassignment) and items labelled confidential (`meta.security` R).
    pub sensitive: Vec<NhsNumber>,
    /// About 3,000 resources across their sources.
    pub large: Vec<NhsNumber>,
    /// Very large records ([`VeryLarge`]), whose acute record holds copies of part of their GP
    /// record ([`Region::copies`]); empty unless [`generate_with`] asked for them.
    pub very_large: Vec<NhsNumber>,
    /// Free text with script tags, bidi overrides, zero-width characters, a 5,000-char string.
    pub hostile: Vec<NhsNumber>,
    /// Currently admitted: an in-progress inpatient Encounter at the acute trust.
    pub admitted: Vec<NhsNumber>,
    /// Patient matching: the acute trust also holds, without an NHS number, a record of this
    /// person's twin (same family, birth date and address; another given name and sex), whom
    /// the GP does not hold. Never linked automatically: a pair for review.
    pub acute_twin: Vec<NhsNumber>,
    /// Patient matching: the acute trust holds a record of this person's parent, who shares
    /// their name and address, carrying this person's NHS number (a wrong NHS number).
    pub acute_wrong_nhs_number: Vec<NhsNumber>,
    /// Patient matching with a local identity: the acute trust's local ids of two twins
    /// (brother and sister: the same family, birth date and address) whom the GP does not hold
    /// and whose records carry no NHS number. The first record matching reads makes a local
    /// identity; the other is a pair for review beside it, never linked automatically.
    pub acute_local_twins: Vec<String>,
}

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

    fn organisation(self) -> Organisation {
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
    /// Index into [`Region::people`].
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
    /// A [`VeryLarge`] record: `large`, scaled further, and copies of GP items at the acute.
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
    /// How many times a typical record a [`VeryLarge`] record is.
    pub very_large_scale: usize,
}

/// One source system's share of the region.
#[derive(Debug, Clone)]
pub struct SourceSlice {
    pub id: SourceId,
    pub kind: SourceKind,
    pub organisation: Organisation,
    /// Resource types held, `Patient` first.
    pub resource_types: Vec<&'static str>,
    patients: Vec<SourcePatient>,
    by_local_id: HashMap<String, usize>,
    core: Arc<Core>,
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

    /// This patient's resources of one type, generated deterministically on demand.
    /// Empty for unknown patients and types this source does not hold.
    pub fn resources(&self, local_id: &str, resource_type: &str) -> Vec<Value> {
        let Some(sp) = self.patient(local_id) else {
            return Vec::new();
        };
        if resource_type == "Patient" {
            return vec![sp.resource.clone()];
        }
        if !self.holds_type(resource_type) {
            return Vec::new();
        }
        clinical::generate(&self.core, self.kind, &self.organisation, sp, resource_type)
    }

    /// The letters a GP practice holds for this patient as PDFs, which it shares through GP
    /// Connect Access Document only (a GP source's R4 searches list no documents, as GP
    /// systems' R4 interfaces in England do not). Empty for other kinds of source.
    pub fn practice_documents(&self, local_id: &str) -> Vec<Value> {
        let Some(sp) = self.patient(local_id) else {
            return Vec::new();
        };
        if self.kind != SourceKind::Gp {
            return Vec::new();
        }
        clinical::generate(
            &self.core,
            self.kind,
            &self.organisation,
            sp,
            "DocumentReference",
        )
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

// ---------------------------------------------------------------------------------------------
// The region

/// Generate the whole region: people, source membership, sample cases and each source's
/// Patient records. Clinical resources come later, on demand.
pub fn generate(cfg: &SynthConfig) -> Region {
    generate_with(cfg, VeryLarge::default())
}

/// Patients with very large records, for the benchmark of a view of one such record: held by
/// the GP, the acute trust and the community trust, every count `scale` times a typical
/// record's (75 gives about 15,000 resources), and the acute trust holding copies of part of
/// the GP record (a third of its results, its long-term problems and current medicines, half
/// its courses of medicine: the same code, time and value), which [`Region::copies`] lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VeryLarge {
    pub patients: usize,
    pub scale: usize,
}

/// An item two sources both hold: the GP's resource and another source's copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub resource_type: &'static str,
    /// The resource's id at the GP system.
    pub gp_id: String,
    /// The source holding the copy (`acute` or `community`).
    pub source: &'static str,
    /// The copy's id at that source.
    pub id: String,
}

/// [`generate`], with `very_large` patients besides (chosen after every other sample, so the
/// other samples are the same people as without them).
pub fn generate_with(cfg: &SynthConfig, very_large: VeryLarge) -> Region {
    let people = demographics(cfg.seed, cfg.patients, cfg.today);
    let n = people.len();
    let mut traits = vec![Traits::default(); n];
    for (p, t) in people.iter().zip(traits.iter_mut()) {
        let mut rng = rng_for(cfg.seed, &[TAG_MEMBERSHIP, p.index as u64]);
        let age = p.age_on(cfg.today);
        t.acute = rng.gen_bool(0.6);
        t.community = rng.gen_bool(if age >= 65 { 0.45 } else { 0.2 });
        t.socialcare = rng.gen_bool(if age >= 75 {
            0.3
        } else if age < 18 {
            0.08
        } else {
            0.06
        });
    }

    let mut key_count: HashMap<(String, String, NaiveDate, String), usize> = HashMap::new();
    for p in &people {
        *key_count.entry(p.match_key()).or_default() += 1;
    }
    let unique = |i: usize| key_count.get(&people[i].match_key()) == Some(&1);

    let mut rng = rng_for(cfg.seed, &[TAG_SAMPLES]);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut cursor = order.into_iter();
    let mut take = |k: usize, want_unique: bool| -> Vec<usize> {
        let mut got = Vec::with_capacity(k);
        for i in cursor.by_ref() {
            if got.len() == k {
                break;
            }
            if !want_unique || unique(i) {
                got.push(i);
            }
        }
        got
    };
    let all_four = take((n / 250).max(3), false);
    let gp_only = take((n / 250).max(3), false);
    let demographics_only = take((n / 500).max(3), true);
    let no_nhs_acute = take((n / 500).max(3), true);
    let name_differs = take((n / 100).max(3), false);
    let hostile = take((n / 2500).max(2), false);
    let large = take((n / 100).max(2), false);
    let sensitive = take((n * 3 / 100).max(3), false);
    let duplicated = take((n / 50).max(4), false);
    let admitted = take((n / 200).max(2), false);
    // Matching cases, taken last so that every sample above is what it was before them.
    let (acute_twin, acute_wrong_nhs) = if n < 1_000_000 {
        (take(2, true), take(2, true))
    } else {
        (Vec::new(), Vec::new())
    };
    let very_large_people = take(very_large.patients, false);

    for &i in &all_four {
        let t = &mut traits[i];
        (t.acute, t.community, t.socialcare) = (true, true, true);
    }
    for &i in &gp_only {
        let t = &mut traits[i];
        (t.acute, t.community, t.socialcare) = (false, false, false);
    }
    for &i in &demographics_only {
        traits[i].acute = true;
        traits[i].gp_lacks_nhs = true;
    }
    for &i in &no_nhs_acute {
        traits[i].acute = true;
        traits[i].acute_lacks_nhs = true;
    }
    for &i in &name_differs {
        traits[i].acute = true;
        traits[i].name_differs = true;
    }
    for &i in &hostile {
        let t = &mut traits[i];
        (t.acute, t.community, t.socialcare, t.hostile) = (true, true, true, true);
    }
    for &i in &large {
        let t = &mut traits[i];
        (t.acute, t.community, t.large) = (true, true, true);
    }
    for &i in &sensitive {
        traits[i].acute = true;
        traits[i].sensitive = true;
    }
    for (k, &i) in duplicated.iter().enumerate() {
        traits[i].acute = true;
        traits[i].duplicated = true;
        traits[i].dose_differs = k % 2 == 1;
    }
    for &i in &admitted {
        traits[i].acute = true;
        traits[i].admitted = true;
    }
    for &i in &acute_twin {
        traits[i].acute_twin = true;
    }
    for &i in &acute_wrong_nhs {
        traits[i].acute_wrong_nhs = true;
    }
    for &i in &very_large_people {
        let t = &mut traits[i];
        (t.acute, t.community, t.large, t.very_large) = (true, true, true, true);
    }

    let nhs = |v: &[usize]| -> Vec<NhsNumber> {
        v.iter().map(|i| people[*i].nhs_number.clone()).collect()
    };
    let samples = Samples {
        all_four: nhs(&all_four),
        gp_only: nhs(&gp_only),
        demographics_only: nhs(&demographics_only),
        no_nhs_number_in_acute: nhs(&no_nhs_acute),
        name_differs: nhs(&name_differs),
        duplicated_items: nhs(&duplicated),
        dose_discrepancy: duplicated
            .iter()
            .filter(|i| traits[**i].dose_differs)
            .map(|i| people[*i].nhs_number.clone())
            .collect(),
        sensitive: nhs(&sensitive),
        large: nhs(&large),
        hostile: nhs(&hostile),
        admitted: nhs(&admitted),
        acute_twin: nhs(&acute_twin),
        acute_wrong_nhs_number: nhs(&acute_wrong_nhs),
        acute_local_twins: acute_twin
            .first()
            .map(|&i| local_twin_ids(cfg.seed, i).to_vec())
            .unwrap_or_default(),
        very_large: nhs(&very_large_people),
    };

    let gp_practices = practices();
    let core = Arc::new(Core {
        seed: cfg.seed,
        today: cfg.today,
        people,
        traits,
        practices: gp_practices.clone(),
        very_large_scale: very_large.scale.max(1),
    });
    let sources = SourceKind::ALL
        .iter()
        .map(|k| Arc::new(build_slice(&core, *k)))
        .collect();
    Region {
        seed: cfg.seed,
        today: cfg.today,
        people: core.people.clone(),
        sources,
        samples,
        gp_practices,
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

fn local_id(kind: SourceKind, seed: u64, i: usize) -> String {
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

fn build_slice(core: &Arc<Core>, kind: SourceKind) -> SourceSlice {
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
        resource_types.extend_from_slice(&clinical::VERY_LARGE_TYPES);
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

/// The acute local ids of the twins [`Samples::acute_local_twins`] names, past the other
/// matching cases' ids.
fn local_twin_ids(seed: u64, index: usize) -> [String; 2] {
    [1_300_000, 1_400_000].map(|past| local_id(SourceKind::Acute, seed, index + past))
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
            let last_updated = timestamp(core.today - chrono::Duration::days(30), 36_000);
            let resource = json!({
                "resourceType": "Patient",
                "id": lid,
                "meta": { "lastUpdated": last_updated },
                "identifier": [{ "system": SourceKind::Acute.mrn_system(), "value": lid }],
                "active": true,
                "name": [{ "use": "official", "family": "Okonjo-Hartley", "given": [given] }],
                "gender": gender,
                "birthDate": "1990-04-02",
                "address": [{
                    "use": "home",
                    "line": ["12 Station Road"],
                    "city": "Knebworth",
                    "postalCode": "SG3 6PU",
                    "country": "GB",
                }],
            });
            SourcePatient {
                local_id: lid,
                resource,
                last_updated,
                person: p.index,
                nhs_number: None,
            }
        })
        .collect()
}

/// The extension carrying a GP registration's period on the GP system's `Patient`.
pub const REGISTRATION_DETAILS: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-RegistrationDetails-1";

/// Days between two dates, never negative.
pub(crate) fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days().max(0)
}

/// The first day of the year `years` before `today`'s year, or the birth date if later.
pub(crate) fn history_start(p: &Person, today: NaiveDate, years: i32) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(today.year() - years, 1, 1).unwrap_or(today);
    start.max(p.birth_date)
}

#[cfg(test)]
mod tests;
