//! On-demand clinical resources: one patient, one source, one resource type at a time.
//!
//! A person's long-term problems, medicines and allergies (their "profile") are drawn from
//! `(seed, person)` alone, so two sources that both record them agree on codes and dates.
//! Everything a single source adds is drawn from `(seed, person, source, type)`.

use crate::codes::{self, Code, Med, ObsKind, ACT_CODE, CONFIDENTIALITY, DMD, LOINC, SNOMED, UCUM};
use crate::{
    days_between, history_start, names, org_reference, rng_for, str_tag, timestamp, Core, Person,
    SourceKind, SourcePatient, SourceSlice, Traits,
};
use base64::Engine as _;
use chrono::{Datelike, Duration, NaiveDate};
use mcr_domain::Organisation;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

mod acute;
mod builders;
mod community;
mod gp;
mod social;

const TAG_PROFILE: u64 = 0x9F;
const TAG_RESOURCES: u64 = 0xC1;

pub const SCRIPT: &str = "<script>alert(1)</script>";
pub const IMG: &str = "\"><img src=x onerror=alert(1)>";
pub const RLO: &str = "Patient note \u{202E}fdp.exe\u{202C} see attached, take \u{2067}2.5\u{2069} mg \u{200F}daily\u{200E}";
pub const ZERO_WIDTH: &str = "Pen\u{200B}icillin\u{200D} al\u{FEFF}lergy\u{2060} noted";

/// A 5,000-character string.
pub fn long_text() -> String {
    "This is a very long free-text note typed into the source system. "
        .chars()
        .cycle()
        .take(5000)
        .collect()
}

fn hostile_note() -> String {
    format!("{SCRIPT} {IMG} {RLO} {ZERO_WIDTH}")
}

/// What a person has, whichever source records it.
struct Profile {
    /// (index into CHRONIC, onset)
    conds: Vec<(usize, NaiveDate)>,
    /// (index into MEDS, start)
    meds: Vec<(usize, NaiveDate)>,
    /// (index into ALLERGIES, index into REACTIONS, criticality, onset)
    allergies: Vec<(usize, usize, &'static str, NaiveDate)>,
    /// (index into SENSITIVE, date)
    sensitive: Vec<(usize, NaiveDate)>,
}

fn date_between(rng: &mut ChaCha8Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = days_between(from, to);
    if span == 0 {
        return from.min(to);
    }
    from + Duration::days(rng.gen_range(0..=span))
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn profile(core: &Core, p: &Person, t: &Traits) -> Profile {
    let today = core.today;
    let mut rng = rng_for(core.seed, &[TAG_PROFILE, p.index as u64]);
    let age = p.age_on(today);
    let n = if t.large {
        rng.gen_range(6..=9)
    } else {
        match age {
            0..=17 => rng.gen_range(0..=1),
            18..=39 => rng.gen_range(0..=2),
            40..=64 => rng.gen_range(1..=4),
            _ => rng.gen_range(2..=6),
        }
    };
    let mut conds: Vec<usize> = if age < 18 {
        // Children: asthma or epilepsy only.
        let mut c = vec![2usize, 13];
        c.shuffle(&mut rng);
        c.truncate(n);
        c
    } else {
        let mut c: Vec<usize> = (0..codes::CHRONIC.len()).collect();
        c.shuffle(&mut rng);
        c.truncate(n);
        c
    };
    if t.duplicated {
        // Hypertension first: it has medicines, so both a problem and a drug can be shared.
        conds.retain(|c| *c != 1);
        conds.insert(0, 1);
    }
    let adult_from = p.birth_date + Duration::days(if age >= 18 { 18 * 365 } else { 365 });
    let earliest = adult_from.max(today - Duration::days(30 * 365));
    let latest = today - Duration::days(60);
    let conds: Vec<(usize, NaiveDate)> = conds
        .into_iter()
        .map(|c| (c, date_between(&mut rng, earliest, latest)))
        .collect();
    let mut meds = Vec::new();
    for (c, onset) in &conds {
        for m in codes::MEDS_FOR[*c] {
            if meds.iter().any(|(x, _)| x == m) {
                continue;
            }
            let start =
                (*onset + Duration::days(rng.gen_range(0..60))).min(today - Duration::days(1));
            meds.push((*m, start));
        }
    }
    let mut allergies = Vec::new();
    if t.large || rng.gen_bool(0.25) {
        let mut a: Vec<usize> = (0..codes::ALLERGIES.len()).collect();
        a.shuffle(&mut rng);
        for i in a.into_iter().take(rng.gen_range(1..=2)) {
            let reaction = rng.gen_range(0..codes::REACTIONS.len());
            let criticality = if reaction == 1 { "high" } else { "low" };
            allergies.push((
                i,
                reaction,
                criticality,
                date_between(&mut rng, p.birth_date, latest),
            ));
        }
    }
    let mut sensitive = Vec::new();
    if t.sensitive {
        let mut s: Vec<usize> = (0..codes::SENSITIVE.len()).collect();
        s.shuffle(&mut rng);
        if p.gender == "other" {
            s.retain(|x| *x != 5);
            s.insert(0, 5);
        }
        for i in s.into_iter().take(rng.gen_range(1..=2)) {
            sensitive.push((i, date_between(&mut rng, earliest, latest)));
        }
    }
    Profile {
        conds,
        meds,
        allergies,
        sensitive,
    }
}

/// Builds resources for one (patient, source, type).
struct Gen<'a> {
    core: &'a Core,
    p: &'a Person,
    t: Traits,
    local: &'a str,
    /// The organisation that recorded the items: the patient's practice for the GP system.
    provider: Value,
    source_org: &'a Organisation,
    prof: Profile,
    rng: ChaCha8Rng,
    scale: usize,
    out: Vec<Value>,
    abbrev: &'static str,
}

pub(crate) fn generate(
    core: &Core,
    kind: SourceKind,
    org: &Organisation,
    sp: &SourcePatient,
    resource_type: &str,
) -> Vec<Value> {
    let (Some(p), Some(t)) = (core.people.get(sp.person), core.traits.get(sp.person)) else {
        return Vec::new();
    };
    let provider = if kind == SourceKind::Gp {
        core.practices
            .iter()
            .find(|o| o.code == p.gp_practice)
            .map_or_else(|| org_reference(org), org_reference)
    } else {
        org_reference(org)
    };
    let abbrev = match resource_type {
        "Condition" => "cond",
        "MedicationStatement" => "med",
        "AllergyIntolerance" => "alg",
        "Observation" => "obs",
        "Encounter" => "enc",
        "Flag" => "flag",
        "DocumentReference" => "doc",
        "CarePlan" => "cp",
        "EpisodeOfCare" => "eoc",
        "RelatedPerson" => "rp",
        "ServiceRequest" => "sr",
        "Consent" => "cons",
        "Immunization" => "imm",
        "Procedure" => "proc",
        "Appointment" => "appt",
        "CareTeam" => "ct",
        "DiagnosticReport" => "dr",
        "MedicationRequest" => "rx",
        _ => return Vec::new(),
    };
    let mut g = Gen {
        core,
        p,
        t: *t,
        local: &sp.local_id,
        provider,
        source_org: org,
        prof: profile(core, p, t),
        rng: rng_for(
            core.seed,
            &[
                TAG_RESOURCES,
                p.index as u64,
                str_tag(kind.id()),
                str_tag(resource_type),
            ],
        ),
        scale: if t.very_large {
            core.very_large_scale
        } else if t.large {
            15
        } else {
            1
        },
        out: Vec::new(),
        abbrev,
    };
    if kind == SourceKind::Acute && t.very_large && COPIED_TYPES.contains(&resource_type) {
        // The hospital's copies of the GP's items come first, in the GP's order.
        let gp_items = gp_resources(core, sp.person, resource_type);
        for k in copied_from_gp(core, sp.person, resource_type, &gp_items) {
            g.copy_of_gp(&gp_items[k]);
        }
        if resource_type == "DiagnosticReport" {
            // A report names its results by the trust's own ids: the trust's copies of the
            // GP's results, which come first in its list of observations, in the GP's order.
            let gp_obs = gp_resources(core, sp.person, "Observation");
            let own: HashMap<String, String> =
                copied_from_gp(core, sp.person, "Observation", &gp_obs)
                    .into_iter()
                    .enumerate()
                    .map(|(j, k)| {
                        (
                            format!(
                                "Observation/{}",
                                gp_obs[k]["id"].as_str().unwrap_or_default()
                            ),
                            format!("Observation/{}-obs{}", sp.local_id, j + 1),
                        )
                    })
                    .collect();
            for report in &mut g.out {
                if let Some(results) = report["result"].as_array_mut() {
                    for r in results {
                        let theirs = r["reference"].as_str().unwrap_or_default();
                        r["reference"] = json!(own
                            .get(theirs)
                            .expect("a copied report's results are copied"));
                    }
                }
            }
        }
    }
    match (kind, resource_type) {
        (SourceKind::Gp, "Condition") => g.gp_conditions(),
        (SourceKind::Gp, "MedicationStatement") => g.gp_medications(),
        (SourceKind::Gp | SourceKind::Acute, "AllergyIntolerance") => g.allergies(kind),
        (SourceKind::Gp, "Observation") => g.gp_observations(),
        (SourceKind::Gp, "Encounter") => g.gp_encounters(),
        (SourceKind::Gp, "Flag") => g.gp_flags(),
        (SourceKind::Gp, "DocumentReference") => g.gp_documents(),
        (SourceKind::Gp, "DiagnosticReport") => g.gp_reports(),
        (SourceKind::Gp, "MedicationRequest") => g.gp_prescriptions(),
        (SourceKind::Acute, "Encounter") => g.acute_encounters(),
        (SourceKind::Acute, "Condition") => g.acute_conditions(),
        (SourceKind::Acute, "MedicationStatement") => g.acute_medications(),
        (SourceKind::Acute, "Observation") => g.acute_observations(),
        (SourceKind::Acute, "DocumentReference") => g.acute_documents(),
        (SourceKind::Acute, "ServiceRequest") => g.acute_referrals(),
        (SourceKind::Acute, "Procedure") => g.acute_procedures(),
        (SourceKind::Acute, "Appointment") => g.acute_appointments(),
        (SourceKind::Community, "Encounter") => g.community_encounters(),
        (SourceKind::Community, "Condition") => g.community_conditions(),
        (SourceKind::Community, "CarePlan") => g.community_care_plans(),
        (SourceKind::Community, "Observation") => g.community_observations(),
        (SourceKind::Community, "EpisodeOfCare") => g.community_episodes(),
        (SourceKind::Community, "Flag") => g.community_flags(),
        (SourceKind::Community, "Immunization") => g.community_immunisations(),
        (SourceKind::Community, "CareTeam") => g.community_care_teams(),
        (SourceKind::SocialCare, "CarePlan") => g.social_care_plans(),
        (SourceKind::SocialCare, "RelatedPerson") => g.social_contacts(),
        (SourceKind::SocialCare, "DocumentReference") => g.social_assessments(),
        (SourceKind::SocialCare, "EpisodeOfCare") => g.social_episodes(),
        (SourceKind::SocialCare, "Flag") => g.social_flags(),
        (SourceKind::SocialCare, "Consent") => g.social_legal_decisions(),
        _ => {}
    }
    g.out
}

/// The types of which a very large record's acute trust holds copies of GP items.
pub(crate) const COPIED_TYPES: [&str; 5] = [
    "Observation",
    "Condition",
    "MedicationStatement",
    "DiagnosticReport",
    "MedicationRequest",
];

/// What a source's slice of the region holds, generated here on demand.
impl SourceSlice {
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
        generate(&self.core, self.kind, &self.organisation, sp, resource_type)
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
        generate(
            &self.core,
            self.kind,
            &self.organisation,
            sp,
            "DocumentReference",
        )
    }
}

/// The laboratory panels among the GP's observations (`gp_observations` takes a full blood
/// count and then urea and electrolytes on one day, in this order): each panel's LOINC code
/// and display, and the positions of its results in `gp_obs`.
fn panels(gp_obs: &[Value]) -> Vec<(&'static str, &'static str, Vec<usize>)> {
    const PANELS: [(&str, &str, &[&str]); 2] = [
        (
            "58410-2",
            "CBC panel - Blood by Automated count",
            &[
                codes::HAEMOGLOBIN.code,
                codes::WBC.code,
                codes::PLATELETS.code,
            ],
        ),
        (
            "24362-6",
            "Renal function 2000 panel - Serum or Plasma",
            &[
                codes::SODIUM.code,
                codes::POTASSIUM.code,
                codes::CREATININE.code,
                codes::EGFR.code,
            ],
        ),
    ];
    let code_at = |k: usize| {
        gp_obs
            .get(k)
            .and_then(|o| o.pointer("/code/coding/0/code")?.as_str())
    };
    let mut out = Vec::new();
    let mut k = 0;
    while k < gp_obs.len() {
        match PANELS.iter().find(|(_, _, members)| {
            members
                .iter()
                .enumerate()
                .all(|(i, c)| code_at(k + i) == Some(*c))
        }) {
            Some((code, display, members)) => {
                out.push((*code, *display, (k..k + members.len()).collect()));
                k += members.len();
            }
            None => k += 1,
        }
    }
    out
}

/// The person's GP resources of one type, as the GP system generates them.
fn gp_resources(core: &Core, person: usize, resource_type: &str) -> Vec<Value> {
    let sp = SourcePatient {
        local_id: crate::local_id(SourceKind::Gp, core.seed, person),
        resource: Value::Null,
        last_updated: String::new(),
        person,
        nhs_number: None,
    };
    generate(
        core,
        SourceKind::Gp,
        &SourceKind::Gp.organisation(),
        &sp,
        resource_type,
    )
}

/// How many long-term problems the person has (the GP lists them first).
pub(crate) fn chronic_problems(core: &Core, person: usize) -> usize {
    match (core.people.get(person), core.traits.get(person)) {
        (Some(p), Some(t)) => profile(core, p, t).conds.len(),
        _ => 0,
    }
}

/// Which of the person's GP items (positions in `gp_items`, the GP's list of one type) the
/// acute trust holds a copy of: for a very large record, a third of the results, the
/// long-term problems, the current medicines and half the courses; none otherwise. Never a
/// restricted item.
pub(crate) fn copied_from_gp(
    core: &Core,
    person: usize,
    resource_type: &str,
    gp_items: &[Value],
) -> Vec<usize> {
    let (Some(p), Some(t)) = (core.people.get(person), core.traits.get(person)) else {
        return Vec::new();
    };
    if !t.very_large {
        return Vec::new();
    }
    let prof = profile(core, p, t);
    // The results of every report the trust holds a copy of, besides a third of the rest.
    let reported: HashSet<usize> = if resource_type == "Observation" {
        panels(gp_items)
            .into_iter()
            .step_by(2)
            .flat_map(|(_, _, results)| results)
            .collect()
    } else {
        HashSet::new()
    };
    (0..gp_items.len())
        .filter(|k| gp_items[*k].pointer("/meta/security").is_none())
        .filter(|&k| match resource_type {
            "Observation" => k.is_multiple_of(3) || reported.contains(&k),
            // Every other report, and every other prescription issued.
            "DiagnosticReport" | "MedicationRequest" => k.is_multiple_of(2),
            // The GP lists the long-term problems first, then the minor ones.
            "Condition" => k < prof.conds.len(),
            // The GP lists the current medicines first, then the courses.
            "MedicationStatement" => k < prof.meds.len() || (k - prof.meds.len()).is_multiple_of(2),
            _ => false,
        })
        .collect()
}

fn cc(system: &str, code: &Code) -> Value {
    json!({
        "coding": [{ "system": system, "code": code.code, "display": code.display }],
        "text": code.display,
    })
}

fn med_code(m: &Med) -> Code {
    Code {
        code: m.code,
        display: m.display,
    }
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}
