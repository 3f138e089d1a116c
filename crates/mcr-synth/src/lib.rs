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
mod sources;

use chrono::{Datelike, NaiveDate};
use mcr_domain::demographics::{normalise_name, normalise_postcode};
use mcr_domain::{NhsNumber, OdsCode, Organisation};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub use population::demographics;
pub(crate) use population::{mix, practices, rng_for, str_tag, TAG_MEMBERSHIP, TAG_SAMPLES};
use sources::{build_slice, local_twin_ids, unreadable_id};
pub(crate) use sources::{local_id, org_reference, timestamp, Core, Traits};
pub use sources::{SourceKind, SourcePatient, SourceSlice};

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
    /// Patient matching: the acute trust's local id of a record whose birth date is not a
    /// whole date (a month and a year). The index cannot read it: it is listed, with why, for
    /// the people who check matching.
    pub acute_unreadable: Vec<String>,
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
        acute_unreadable: acute_twin
            .first()
            .map(|&i| vec![unreadable_id(cfg.seed, i)])
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
