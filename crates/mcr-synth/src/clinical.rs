//! On-demand clinical resources: one patient, one source, one resource type at a time.
//!
//! A person's long-term problems, medicines and allergies (their "profile") are drawn from
//! `(seed, person)` alone, so two sources that both record them agree on codes and dates.
//! Everything a single source adds is drawn from `(seed, person, source, type)`.

use crate::codes::{self, Code, Med, ObsKind, ACT_CODE, CONFIDENTIALITY, DMD, LOINC, SNOMED, UCUM};
use crate::{
    days_between, history_start, names, org_reference, rng_for, str_tag, timestamp, Core, Person,
    SourceKind, SourcePatient, Traits,
};
use base64::Engine as _;
use chrono::{Datelike, Duration, NaiveDate};
use mcr_domain::Organisation;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

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

/// The types only a very large record's GP and acute records hold (the GP's laboratory reports
/// and prescriptions, and the trust's copies of half of them): other records and regions
/// without a very large record are as they were.
pub(crate) const VERY_LARGE_TYPES: [&str; 2] = ["DiagnosticReport", "MedicationRequest"];

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

impl Gen<'_> {
    fn today(&self) -> NaiveDate {
        self.core.today
    }

    fn age(&self) -> u32 {
        self.p.age_on(self.core.today)
    }

    /// Who asserted or recorded an item: a clinician in a role at the provider (R4 allows no
    /// Organization there), named but not resolvable, as GP systems often send it.
    fn clinician(&self) -> Value {
        json!({
            "type": "PractitionerRole",
            "display": format!("Clinician, {}", self.provider["display"].as_str().unwrap_or("the provider")),
        })
    }

    fn subject(&self) -> Value {
        json!({ "reference": format!("Patient/{}", self.local) })
    }

    fn next_id(&self) -> String {
        format!("{}-{}{}", self.local, self.abbrev, self.out.len() + 1)
    }

    fn ts(&mut self, d: NaiveDate) -> String {
        let secs = self.rng.gen_range(8 * 3600..19 * 3600);
        timestamp(d, secs)
    }

    fn meta(&mut self, d: NaiveDate, restricted: bool) -> Value {
        let updated = (d + Duration::days(self.rng.gen_range(0..3))).min(self.today());
        let mut m = json!({ "lastUpdated": self.ts(updated) });
        if restricted {
            m["security"] =
                json!([{ "system": CONFIDENTIALITY, "code": "R", "display": "restricted" }]);
        }
        m
    }

    fn history(&self, years: i32) -> NaiveDate {
        history_start(self.p, self.today(), years)
    }

    fn recent_date(&mut self, years: i32) -> NaiveDate {
        let from = self.history(years);
        let to = self.today() - Duration::days(1);
        date_between(&mut self.rng, from, to)
    }

    fn count(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.gen_range(lo..=hi) * self.scale
    }

    // ---- shared builders ------------------------------------------------------------------

    #[expect(
        clippy::too_many_arguments,
        reason = "a Condition has this many independent parts"
    )]
    fn condition(
        &mut self,
        code: &Code,
        onset: NaiveDate,
        recorded: NaiveDate,
        active: bool,
        restricted: bool,
        note: Option<String>,
        code_text: Option<String>,
    ) {
        let mut r = json!({
            "resourceType": "Condition",
            "id": self.next_id(),
            "meta": self.meta(recorded, restricted),
            "clinicalStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": if active { "active" } else { "resolved" },
            }]},
            "verificationStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed",
            }]},
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item",
                "display": "Problem List Item",
            }]}],
            "code": cc(SNOMED, code),
            "subject": self.subject(),
            "onsetDateTime": day(onset),
            "recordedDate": day(recorded),
            "asserter": self.clinician(),
        });
        if !active {
            let end = (onset + Duration::days(self.rng.gen_range(5..40))).min(self.today());
            r["abatementDateTime"] = json!(day(end));
        }
        if let Some(text) = note {
            r["note"] = json!([{ "text": text }]);
        }
        if let Some(text) = code_text {
            r["code"]["text"] = json!(text);
        }
        self.out.push(r);
    }

    fn medication(
        &mut self,
        med: &Med,
        start: NaiveDate,
        end: Option<NaiveDate>,
        dose: &str,
        restricted: bool,
    ) {
        let mut period = json!({ "start": day(start) });
        if let Some(e) = end {
            period["end"] = json!(day(e));
        }
        let r = json!({
            "resourceType": "MedicationStatement",
            "id": self.next_id(),
            "meta": self.meta(start, restricted),
            "status": if end.is_some() { "completed" } else { "active" },
            "medicationCodeableConcept": cc(DMD, &med_code(med)),
            "subject": self.subject(),
            "effectivePeriod": period,
            "dateAsserted": day(start),
            "informationSource": self.provider.clone(),
            "dosage": [{ "text": dose }],
        });
        self.out.push(r);
    }

    /// The acute trust's copy of a GP item: the same code, times, value and dose, under its
    /// own id, about its own patient, recorded by the trust.
    fn copy_of_gp(&mut self, gp: &Value) {
        let mut r = gp.clone();
        r["id"] = json!(self.next_id());
        for field in ["subject", "patient"] {
            if r.get(field).is_some() {
                r[field] = self.subject();
            }
        }
        if r.get("performer").is_some() {
            r["performer"] = json!([self.provider.clone()]);
        }
        if r.get("informationSource").is_some() {
            r["informationSource"] = self.provider.clone();
        }
        if r.get("asserter").is_some() {
            r["asserter"] = self.clinician();
        }
        if r.get("requester").is_some() {
            r["requester"] = self.provider.clone();
        }
        self.out.push(r);
    }

    fn observation(&mut self, kind: &ObsKind, d: NaiveDate, mean: f64) {
        let value = round_to(
            (mean + kind.sd * gauss(&mut self.rng)).max(kind.sd / 2.0),
            kind.decimals,
        );
        let when = self.ts(d);
        let r = json!({
            "resourceType": "Observation",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": kind.category,
            }]}],
            "code": cc(LOINC, &Code { code: kind.code, display: kind.display }),
            "subject": self.subject(),
            "effectiveDateTime": when,
            "issued": when,
            "performer": [self.provider.clone()],
            "valueQuantity": { "value": value, "unit": kind.unit, "system": UCUM, "code": kind.unit },
        });
        self.out.push(r);
    }

    fn blood_pressure(&mut self, d: NaiveDate, hypertensive: bool) {
        let (s, dia) = if hypertensive {
            (148.0, 90.0)
        } else {
            (124.0, 78.0)
        };
        let sys = (s + 12.0 * gauss(&mut self.rng)).round();
        let dia = (dia + 8.0 * gauss(&mut self.rng)).round();
        let when = self.ts(d);
        let component = |c: &Code, v: f64| {
            json!({
                "code": cc(LOINC, c),
                "valueQuantity": { "value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]" },
            })
        };
        let r = json!({
            "resourceType": "Observation",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }]}],
            "code": cc(LOINC, &codes::BP_PANEL),
            "subject": self.subject(),
            "effectiveDateTime": when,
            "issued": when,
            "performer": [self.provider.clone()],
            "component": [component(&codes::BP_SYSTOLIC, sys), component(&codes::BP_DIASTOLIC, dia)],
        });
        self.out.push(r);
    }

    fn has(&self, chronic: usize) -> bool {
        self.prof.conds.iter().any(|(c, _)| *c == chronic)
    }

    fn encounter(
        &mut self,
        class: (&str, &str),
        kind: &Code,
        start: NaiveDate,
        end: Option<NaiveDate>,
        reason: Option<&Code>,
    ) -> NaiveDate {
        let start_ts = self.ts(start);
        let mut period = json!({ "start": start_ts });
        if let Some(e) = end {
            period["end"] = json!(self.ts(e));
        }
        let mut r = json!({
            "resourceType": "Encounter",
            "id": self.next_id(),
            "meta": self.meta(end.unwrap_or(start), false),
            "status": if end.is_some() { "finished" } else { "in-progress" },
            "class": { "system": ACT_CODE, "code": class.0, "display": class.1 },
            "type": [cc(SNOMED, kind)],
            "subject": self.subject(),
            "period": period,
            "serviceProvider": self.provider.clone(),
        });
        if let Some(code) = reason {
            r["reasonCode"] = json!([cc(SNOMED, code)]);
        }
        if class.0 == "IMP" {
            if end.is_some() {
                r["hospitalization"] = json!({ "dischargeDisposition": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                    "code": "home",
                    "display": "Home",
                }]}});
            }
            r["location"] = json!([{ "location": { "display": "Ward 7B, Lister Hospital" } }]);
        }
        self.out.push(r);
        start
    }

    fn flag(
        &mut self,
        system: &str,
        code: &Code,
        category: &str,
        start: NaiveDate,
        text: Option<String>,
    ) {
        let mut r = json!({
            "resourceType": "Flag",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": "active",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                "code": category,
            }]}],
            "code": cc(system, code),
            "subject": self.subject(),
            "period": { "start": day(start) },
            "author": self.provider.clone(),
        });
        if let Some(t) = text {
            r["code"]["text"] = json!(t);
        }
        self.out.push(r);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "a DocumentReference has this many independent parts"
    )]
    fn document(
        &mut self,
        type_: Value,
        category: Value,
        title: &str,
        body: &str,
        content_type: &str,
        d: NaiveDate,
        restricted: bool,
    ) {
        let data = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let when = self.ts(d);
        let r = json!({
            "resourceType": "DocumentReference",
            "id": self.next_id(),
            "meta": self.meta(d, restricted),
            "status": "current",
            "type": type_,
            "category": [category],
            "subject": self.subject(),
            "date": when,
            "author": [self.provider.clone()],
            "custodian": self.provider.clone(),
            "description": title,
            "content": [{ "attachment": {
                "contentType": content_type,
                "language": "en-GB",
                "data": data,
                "title": title,
                "creation": when,
            }}],
        });
        self.out.push(r);
    }

    fn care_plan(
        &mut self,
        category: Value,
        title: &str,
        description: &str,
        start: NaiveDate,
        active: bool,
        restricted: bool,
    ) {
        let mut period = json!({ "start": day(start) });
        if !active {
            period["end"] = json!(day((start + Duration::days(90)).min(self.today())));
        }
        let r = json!({
            "resourceType": "CarePlan",
            "id": self.next_id(),
            "meta": self.meta(start, restricted),
            "status": if active { "active" } else { "completed" },
            "intent": "plan",
            "category": [category],
            "title": title,
            "description": description,
            "subject": self.subject(),
            "period": period,
            "author": self.provider.clone(),
        });
        self.out.push(r);
    }

    fn episode(&mut self, type_: Value, team: &str, start: NaiveDate, active: bool) {
        let mut period = json!({ "start": day(start) });
        if !active {
            period["end"] = json!(day(
                (start + Duration::days(self.rng.gen_range(14..200))).min(self.today())
            ));
        }
        let r = json!({
            "resourceType": "EpisodeOfCare",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": if active { "active" } else { "finished" },
            "type": [type_],
            "patient": self.subject(),
            "managingOrganization": org_reference(self.source_org),
            "period": period,
            "team": [{ "display": team }],
        });
        self.out.push(r);
    }

    // ---- GP ---------------------------------------------------------------------------------

    fn gp_conditions(&mut self) {
        let conds = self.prof.conds.clone();
        for (k, (c, onset)) in conds.iter().enumerate() {
            let recorded = (*onset + Duration::days(self.rng.gen_range(0..14))).min(self.today());
            let note = (self.t.hostile && k == 0).then(hostile_note);
            self.condition(
                &codes::CHRONIC[*c],
                *onset,
                recorded,
                true,
                false,
                note,
                None,
            );
        }
        let minor = self.count(2, 7);
        for k in 0..minor {
            let code = codes::MINOR[self.rng.gen_range(0..codes::MINOR.len())];
            let onset = self.recent_date(10);
            let note = (self.t.hostile && conds.is_empty() && k == 0).then(hostile_note);
            self.condition(&code, onset, onset, false, false, note, None);
        }
        for (s, d) in self.prof.sensitive.clone() {
            let restricted = s == 0 || self.rng.gen_bool(0.5);
            let active = matches!(s, 0 | 5);
            self.condition(&codes::SENSITIVE[s], d, d, active, restricted, None, None);
        }
        if self.t.hostile {
            let d = self.recent_date(2);
            self.condition(
                &codes::MINOR[0],
                d,
                d,
                false,
                false,
                Some(long_text()),
                Some(format!("{SCRIPT}{IMG}")),
            );
        }
    }

    fn gp_medications(&mut self) {
        for (k, (m, start)) in self.prof.meds.clone().into_iter().enumerate() {
            let med = codes::MEDS[m];
            let dose = if self.t.hostile && k == 0 {
                format!("{IMG} {SCRIPT}")
            } else {
                med.dose.to_owned()
            };
            self.medication(&med, start, None, &dose, false);
        }
        let courses = self.count(1, 5);
        for _ in 0..courses {
            let med = codes::MEDS[codes::COURSES[self.rng.gen_range(0..codes::COURSES.len())]];
            let start = self.recent_date(8);
            let end = (start + Duration::days(7)).min(self.today());
            self.medication(&med, start, Some(end), med.dose, false);
        }
        if let Some((_, d)) = self.prof.sensitive.iter().find(|(s, _)| *s == 0).copied() {
            let arv = codes::ANTIRETROVIRAL;
            self.medication(&arv, d, None, arv.dose, true);
        }
    }

    fn allergies(&mut self, kind: SourceKind) {
        let mut list = self.prof.allergies.clone();
        if kind == SourceKind::Acute {
            // The hospital records the first one (the same code as the GP's).
            list.truncate(1);
        }
        for (a, reaction, criticality, onset) in list {
            let category = match a {
                0 | 1 | 4 => "medication",
                2 | 3 => "food",
                _ => "environment",
            };
            let recorded = if kind == SourceKind::Gp {
                onset
            } else {
                self.recent_date(3).max(onset)
            };
            let r = json!({
                "resourceType": "AllergyIntolerance",
                "id": self.next_id(),
                "meta": self.meta(recorded, false),
                "clinicalStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }]},
                "verificationStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }]},
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": cc(SNOMED, &codes::ALLERGIES[a]),
                "patient": self.subject(),
                "onsetDateTime": day(onset),
                "recordedDate": day(recorded),
                "recorder": self.clinician(),
                "reaction": [{
                    "manifestation": [cc(SNOMED, &codes::REACTIONS[reaction])],
                    "severity": if criticality == "high" { "severe" } else { "mild" },
                }],
            });
            self.out.push(r);
        }
    }

    fn series(&mut self, kind: &ObsKind, n: usize, years: i32, mean: f64) {
        for _ in 0..n {
            let d = self.recent_date(years);
            self.observation(kind, d, mean);
        }
    }

    fn gp_observations(&mut self) {
        if self.age() < 16 && !self.t.large {
            let n = self.count(2, 5);
            self.series(&codes::WEIGHT, n, 10, 10.0 + 3.0 * f64::from(self.age()));
            let n = self.count(1, 4);
            self.series(&codes::TEMPERATURE, n, 10, codes::TEMPERATURE.mean);
            let n = self.count(1, 3);
            self.series(&codes::HEART_RATE, n, 10, 95.0);
            return;
        }
        let hypertensive = self.has(1);
        let n = self.count(6, 14) + if hypertensive { 8 * self.scale } else { 0 };
        for _ in 0..n {
            let d = self.recent_date(8);
            self.blood_pressure(d, hypertensive);
        }
        let n = self.count(3, 8);
        self.series(&codes::WEIGHT, n, 8, codes::WEIGHT.mean);
        let n = self.count(1, 3);
        self.series(&codes::BMI, n, 8, codes::BMI.mean);
        let n = self.count(3, 8);
        self.series(&codes::HEART_RATE, n, 8, codes::HEART_RATE.mean);
        let n = self.count(0, 4);
        self.series(&codes::SPO2, n, 5, codes::SPO2.mean);
        let n = self.count(1, 4);
        self.series(&codes::CHOLESTEROL, n, 8, codes::CHOLESTEROL.mean);
        // HbA1c: quarterly for people with diabetes, drifting down as treatment works.
        if self.has(0) {
            let start = self.history(6);
            let quarters = usize::try_from(days_between(start, self.today()) / 91).unwrap_or(0);
            let n = quarters * self.scale.min(3);
            for q in 0..n {
                let d = start
                    + Duration::days(
                        i64::try_from(q * 91 / self.scale.min(3)).unwrap_or(0)
                            + self.rng.gen_range(0..20),
                    );
                let mean = 66.0 - 10.0 * (q as f64 / n.max(1) as f64);
                self.observation(&codes::HBA1C, d.min(self.today()), mean);
            }
        } else {
            let n = self.count(0, 2);
            self.series(&codes::HBA1C, n, 6, codes::HBA1C.mean);
        }
        // Blood panels: full blood count and urea & electrolytes on the same day.
        let ckd = self.has(6);
        let panels = self.count(4, 10);
        for _ in 0..panels {
            let d = self.recent_date(8);
            for k in [
                &codes::HAEMOGLOBIN,
                &codes::WBC,
                &codes::PLATELETS,
                &codes::SODIUM,
                &codes::POTASSIUM,
            ] {
                self.observation(k, d, k.mean);
            }
            self.observation(
                &codes::CREATININE,
                d,
                if ckd { 150.0 } else { codes::CREATININE.mean },
            );
            self.observation(&codes::EGFR, d, if ckd { 42.0 } else { codes::EGFR.mean });
        }
    }

    /// A very large record's laboratory reports: each full blood count and each urea and
    /// electrolytes panel among the GP's observations, as a `DiagnosticReport` naming its
    /// results, dated as its first result.
    fn gp_reports(&mut self) {
        if !self.t.very_large {
            return;
        }
        let obs = gp_resources(self.core, self.p.index, "Observation");
        for (code, display, results) in panels(&obs) {
            let first = &obs[results[0]];
            let r = json!({
                "resourceType": "DiagnosticReport",
                "id": self.next_id(),
                "meta": first["meta"].clone(),
                "status": "final",
                "category": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code": "LAB",
                    "display": "Laboratory",
                }]}],
                "code": cc(LOINC, &Code { code, display }),
                "subject": self.subject(),
                "effectiveDateTime": first["effectiveDateTime"].clone(),
                "issued": first["issued"].clone(),
                "performer": [self.provider.clone()],
                "result": results
                    .iter()
                    .map(|k| json!({ "reference": format!("Observation/{}", obs[*k]["id"].as_str().unwrap_or_default()) }))
                    .collect::<Vec<_>>(),
            });
            self.out.push(r);
        }
    }

    /// A very large record's prescriptions, each a completed `MedicationRequest` valid for 28
    /// days: each current medicine issued every 28 days since it started (at most eight years
    /// back), and each course of medicine the GP records, issued the day it started.
    fn gp_prescriptions(&mut self) {
        if !self.t.very_large {
            return;
        }
        let from = self.today() - Duration::days(8 * 365);
        let mut issues: Vec<(Med, NaiveDate)> = Vec::new();
        for (m, start) in self.prof.meds.clone() {
            let mut d = start.max(from);
            while d < self.today() {
                issues.push((codes::MEDS[m], d));
                d += Duration::days(28);
            }
        }
        let courses = gp_resources(self.core, self.p.index, "MedicationStatement");
        for c in courses
            .iter()
            .filter(|c| c["status"] == "completed" && c.pointer("/meta/security").is_none())
        {
            let code = c.pointer("/medicationCodeableConcept/coding/0/code");
            let start = c.pointer("/effectivePeriod/start").and_then(Value::as_str);
            let med = codes::MEDS
                .iter()
                .find(|m| code == Some(&Value::from(m.code)));
            if let (Some(med), Some(Ok(d))) = (med, start.map(|s| s.parse::<NaiveDate>())) {
                issues.push((*med, d));
            }
        }
        for (med, d) in issues {
            {
                let r = json!({
                    "resourceType": "MedicationRequest",
                    "id": self.next_id(),
                    "meta": self.meta(d, false),
                    "status": "completed",
                    "intent": "order",
                    "courseOfTherapyType": { "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                        "code": "continuous",
                    }]},
                    "medicationCodeableConcept": cc(DMD, &med_code(&med)),
                    "subject": self.subject(),
                    "authoredOn": day(d),
                    "requester": self.provider.clone(),
                    "dosageInstruction": [{ "text": med.dose }],
                    "dispenseRequest": { "validityPeriod": {
                        "start": day(d),
                        "end": day(d + Duration::days(28)),
                    }},
                });
                self.out.push(r);
            }
        }
    }

    fn gp_encounters(&mut self) {
        let n = self.count(16, 40) + if self.age() >= 65 { 10 * self.scale } else { 0 };
        let conds: Vec<Code> = self
            .prof
            .conds
            .iter()
            .map(|(c, _)| codes::CHRONIC[*c])
            .collect();
        for _ in 0..n {
            let d = self.recent_date(6);
            let kind =
                codes::GP_ENCOUNTER_TYPES[self.rng.gen_range(0..codes::GP_ENCOUNTER_TYPES.len())];
            let reason = if conds.is_empty() || self.rng.gen_bool(0.4) {
                codes::MINOR[self.rng.gen_range(0..codes::MINOR.len())]
            } else {
                conds[self.rng.gen_range(0..conds.len())]
            };
            self.encounter(("AMB", "ambulatory"), &kind, d, Some(d), Some(&reason));
        }
    }

    /// The letters a practice holds as PDFs (a referral it sent, a discharge summary it
    /// received), shared through GP Connect Access Document only: see
    /// [`crate::SourceSlice::practice_documents`].
    fn gp_documents(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.hertsgp.example/CodeSystem/document-category",
            "code": "correspondence",
            "display": "Correspondence",
        }]});
        let n = self.rng.gen_range(1..=3);
        for k in 0..n {
            let d = self.recent_date(4);
            let (code, title) = if k % 2 == 0 {
                (codes::REFERRAL, "Referral letter (PDF)")
            } else {
                (codes::DISCHARGE_SUMMARY, "Discharge summary received (PDF)")
            };
            self.pdf_document(cc(SNOMED, &code), category.clone(), title, d);
        }
    }

    fn gp_flags(&mut self) {
        if self.age() >= 75 {
            let d = self.recent_date(3);
            self.flag(SNOMED, &codes::FALLS, "clinical", d, None);
        }
        let n = if self.rng.gen_bool(0.3) {
            self.rng.gen_range(1..=2)
        } else {
            0
        };
        for _ in 0..n {
            let code = codes::GP_FLAGS[self.rng.gen_range(1..codes::GP_FLAGS.len())];
            let d = self.recent_date(5);
            self.flag(SNOMED, &code, "clinical", d, None);
        }
    }

    // ---- acute ------------------------------------------------------------------------------

    /// Referrals to the trust's clinics (from the patient's GP): about one patient in five has
    /// one open, made in the last two months; some have an older one, completed.
    fn acute_referrals(&mut self) {
        let today = self.today();
        if self.rng.gen_bool(0.2) {
            let d = date_between(
                &mut self.rng,
                today - Duration::days(60),
                today - Duration::days(1),
            );
            self.referral(d, true);
        }
        if self.rng.gen_bool(0.3) {
            let d = self.recent_date(3);
            self.referral(d, false);
        }
    }

    /// Operations and investigations done here: about one patient in four.
    fn acute_procedures(&mut self) {
        if !self.rng.gen_bool(0.25) {
            return;
        }
        let n = self.count(1, 2);
        for _ in 0..n {
            let code = codes::PROCEDURES[self.rng.gen_range(0..codes::PROCEDURES.len())];
            let d = self.recent_date(10);
            let r = json!({
                "resourceType": "Procedure",
                "id": self.next_id(),
                "meta": self.meta(d, false),
                "status": "completed",
                "code": cc(SNOMED, &code),
                "subject": self.subject(),
                "performedDateTime": day(d),
                "performer": [{ "actor": self.clinician() }],
            });
            self.out.push(r);
        }
    }

    /// An outpatient appointment booked one to four months ahead: about one patient in four.
    /// (Further ahead than the policy's default 30 days, so the demo's relationships stay
    /// what its other care events make them.)
    fn acute_appointments(&mut self) {
        if !self.rng.gen_bool(0.25) {
            return;
        }
        let clinic = codes::CLINICS[self.rng.gen_range(0..codes::CLINICS.len())];
        let today = self.today();
        let d = date_between(
            &mut self.rng,
            today + Duration::days(31),
            today + Duration::days(120),
        );
        let secs = self.rng.gen_range(9 * 2..17 * 2) * 1800;
        let start = timestamp(d, secs);
        // R4: an appointment with a start has an end (app-2).
        let end = timestamp(d, secs + 1800);
        let booked = today - Duration::days(self.rng.gen_range(1..30));
        let r = json!({
            "resourceType": "Appointment",
            "id": self.next_id(),
            "meta": self.meta(booked, false),
            "status": "booked",
            "serviceType": [{ "text": clinic }],
            "description": clinic,
            "start": start,
            "end": end,
            "minutesDuration": 30,
            "created": day(booked),
            "participant": [
                { "actor": { "reference": format!("Patient/{}", self.local) }, "status": "accepted" },
                { "actor": { "type": "Location", "display": clinic }, "status": "accepted" },
            ],
        });
        self.out.push(r);
    }

    fn referral(&mut self, authored: NaiveDate, active: bool) {
        let r = json!({
            "resourceType": "ServiceRequest",
            "id": self.next_id(),
            "meta": self.meta(authored, false),
            "status": if active { "active" } else { "completed" },
            "intent": "order",
            "code": cc(SNOMED, &codes::REFERRAL),
            "subject": self.subject(),
            "authoredOn": day(authored),
            "performer": [org_reference(self.source_org)],
        });
        self.out.push(r);
    }

    fn acute_encounters(&mut self) {
        let ae = self.count(1, 4);
        for _ in 0..ae {
            let d = self.recent_date(6);
            let reason = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            self.encounter(
                ("EMER", "emergency"),
                &codes::ED_VISIT,
                d,
                Some(d),
                Some(&reason),
            );
        }
        let imp = self.count(0, 2);
        for _ in 0..imp {
            let d = self.recent_date(6);
            let end = (d + Duration::days(self.rng.gen_range(1..12))).min(self.today());
            let reason = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            self.encounter(
                ("IMP", "inpatient encounter"),
                &codes::ADMISSION,
                d,
                Some(end),
                Some(&reason),
            );
        }
        let amb = self.count(2, 7);
        for _ in 0..amb {
            let d = self.recent_date(6);
            self.encounter(("AMB", "ambulatory"), &codes::OUTPATIENT, d, Some(d), None);
        }
        if self.t.admitted {
            let d = self.today() - Duration::days(self.rng.gen_range(0..6));
            self.encounter(
                ("EMER", "emergency"),
                &codes::ED_VISIT,
                d,
                None,
                Some(&codes::ACUTE_PROBLEMS[0]),
            );
            self.encounter(
                ("IMP", "inpatient encounter"),
                &codes::ADMISSION,
                d,
                None,
                Some(&codes::ACUTE_PROBLEMS[0]),
            );
        }
    }

    fn acute_conditions(&mut self) {
        if self.t.duplicated {
            if let Some((c, onset)) = self.prof.conds.first().copied() {
                let recorded = self.recent_date(3).max(onset);
                self.condition(&codes::CHRONIC[c], onset, recorded, true, false, None, None);
            }
        }
        let n = self.count(1, 4);
        for _ in 0..n {
            let code = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            let d = self.recent_date(6);
            self.condition(&code, d, d, false, false, None, None);
        }
        for (s, d) in self.prof.sensitive.clone() {
            self.condition(
                &codes::SENSITIVE[s],
                d,
                d,
                matches!(s, 0 | 5),
                true,
                None,
                None,
            );
        }
        if self.t.hostile {
            let d = self.recent_date(2);
            self.condition(
                &codes::ACUTE_PROBLEMS[3],
                d,
                d,
                false,
                false,
                Some(format!("{RLO} {ZERO_WIDTH}")),
                None,
            );
        }
    }

    fn acute_medications(&mut self) {
        if self.t.duplicated {
            if let Some((m, start)) = self.prof.meds.first().copied() {
                let med = codes::MEDS[m];
                let dose = if self.t.dose_differs {
                    med.other_dose
                } else {
                    med.dose
                };
                let asserted = self.recent_date(2).max(start);
                self.medication(&med, asserted, None, dose, false);
            }
        }
        let n = self.count(1, 5);
        for _ in 0..n {
            let med = codes::MEDS[self.rng.gen_range(0..codes::MEDS.len())];
            let start = self.recent_date(6);
            let end = (start + Duration::days(self.rng.gen_range(5..30))).min(self.today());
            self.medication(&med, start, Some(end), med.dose, false);
        }
    }

    fn acute_observations(&mut self) {
        let panels = self.count(3, 9);
        for _ in 0..panels {
            let d = self.recent_date(6);
            for k in [
                &codes::HAEMOGLOBIN,
                &codes::WBC,
                &codes::PLATELETS,
                &codes::SODIUM,
                &codes::POTASSIUM,
                &codes::CREATININE,
                &codes::EGFR,
                &codes::CRP,
            ] {
                self.observation(k, d, k.mean);
            }
        }
    }

    fn acute_documents(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.enherts-tr.nhs.uk/CodeSystem/document-category",
            "code": "clinical-letter",
            "display": "Clinical letter",
        }]});
        let n = self.count(1, 6);
        for k in 0..n {
            let d = self.recent_date(6);
            let problem = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            let (type_code, title) = if k % 2 == 0 {
                (codes::DISCHARGE_SUMMARY, "Discharge summary")
            } else {
                (codes::CLINIC_LETTER, "Outpatient clinic letter")
            };
            let text = format!(
                "{title}\n\nSeen on {} with {}. Investigations reviewed. Plan discussed with the patient. \
                 Please continue current medication and review in primary care in two weeks.",
                day(d),
                problem.display.to_lowercase()
            );
            if self.rng.gen_bool(0.5) {
                self.document(
                    cc(SNOMED, &type_code),
                    category.clone(),
                    title,
                    &text,
                    "text/plain",
                    d,
                    false,
                );
            } else {
                let html = format!(
                    "<html><body><h1>{title}</h1><p>{}</p></body></html>",
                    text.replace('\n', " ")
                );
                self.document(
                    cc(SNOMED, &type_code),
                    category.clone(),
                    title,
                    &html,
                    "text/html",
                    d,
                    false,
                );
            }
        }
        for (s, d) in self.prof.sensitive.clone() {
            let text = format!(
                "Sexual and reproductive health clinic letter.\n\nDiagnosis: {}. Confidential: not for onward disclosure.",
                codes::SENSITIVE[s].display
            );
            self.document(
                cc(SNOMED, &codes::CLINIC_LETTER),
                category.clone(),
                "Clinic letter",
                &text,
                "text/plain",
                d,
                true,
            );
        }
        if self.t.hostile {
            let d = self.recent_date(1);
            let html = format!(
                "<html><body><h1>Discharge summary</h1><p>{SCRIPT}</p><p>{IMG}</p><p>{RLO}</p><p>{ZERO_WIDTH}</p><p>{}</p></body></html>",
                long_text()
            );
            self.document(
                cc(SNOMED, &codes::DISCHARGE_SUMMARY),
                category.clone(),
                &format!("Discharge {SCRIPT}"),
                &html,
                "text/html",
                d,
                false,
            );
        }
        // Some letters are held as PDFs the source sends only when asked (`Binary`).
        if self.rng.gen_bool(0.4) {
            let d = self.recent_date(6);
            self.pdf_document(
                cc(SNOMED, &codes::DISCHARGE_SUMMARY),
                category,
                "Discharge summary (PDF)",
                d,
            );
        }
    }

    /// A `DocumentReference` whose content is a PDF held on the source as a `Binary` of the
    /// same id (`attachment.url` = `Binary/{id}`); [`crate::SourceSlice::binary`] makes it.
    fn pdf_document(&mut self, type_: Value, category: Value, title: &str, d: NaiveDate) {
        let id = self.next_id();
        let when = self.ts(d);
        let r = json!({
            "resourceType": "DocumentReference",
            "id": id,
            "meta": self.meta(d, false),
            "status": "current",
            "type": type_,
            "category": [category],
            "subject": self.subject(),
            "date": when,
            "author": [self.provider.clone()],
            "custodian": self.provider.clone(),
            "description": title,
            "content": [{ "attachment": {
                "contentType": "application/pdf",
                "language": "en-GB",
                "url": format!("Binary/{id}"),
                "title": title,
                "creation": when,
            }}],
        });
        self.out.push(r);
    }

    // ---- community --------------------------------------------------------------------------

    fn community_encounters(&mut self) {
        let n = self.count(15, 40);
        for _ in 0..n {
            let d = self.recent_date(4);
            if self.rng.gen_bool(0.7) {
                self.encounter(("HH", "home health"), &codes::HOME_VISIT, d, Some(d), None);
            } else {
                self.encounter(("AMB", "ambulatory"), &codes::OUTPATIENT, d, Some(d), None);
            }
        }
    }

    fn community_conditions(&mut self) {
        let conds = self.prof.conds.clone();
        for (c, onset) in conds.into_iter().take(2) {
            let recorded = self.recent_date(4).max(onset);
            self.condition(&codes::CHRONIC[c], onset, recorded, true, false, None, None);
        }
        if self.age() >= 70 {
            let d = self.recent_date(2);
            self.condition(&codes::ACUTE_PROBLEMS[5], d, d, false, false, None, None);
        }
    }

    fn community_care_plans(&mut self) {
        let category = cc(SNOMED, &codes::CARE_PLAN);
        let n = self.count(1, 3);
        for k in 0..n {
            let title = codes::COMMUNITY_PLANS[self.rng.gen_range(0..codes::COMMUNITY_PLANS.len())];
            let start = self.recent_date(3);
            let active = k == 0 || self.rng.gen_bool(0.3);
            let restricted = title.starts_with("Mental health") && self.t.sensitive;
            let description = if self.t.hostile && k == 0 {
                format!("{SCRIPT} {IMG} {}", long_text())
            } else {
                format!("{title}: goals agreed with the patient and family; review every 6 weeks.")
            };
            self.care_plan(
                category.clone(),
                title,
                &description,
                start,
                active,
                restricted,
            );
        }
    }

    fn community_observations(&mut self) {
        let n = self.count(3, 10);
        self.series(&codes::WEIGHT, n, 3, codes::WEIGHT.mean);
        let n = self.count(3, 10);
        for _ in 0..n {
            let d = self.recent_date(3);
            self.blood_pressure(d, self.has(1));
        }
        let n = self.count(2, 8);
        self.series(&codes::SPO2, n, 3, codes::SPO2.mean);
        let n = self.count(1, 5);
        self.series(&codes::TEMPERATURE, n, 3, codes::TEMPERATURE.mean);
    }

    fn community_episodes(&mut self) {
        let n = self.count(1, 3);
        for k in 0..n {
            let team = codes::COMMUNITY_TEAMS[self.rng.gen_range(0..codes::COMMUNITY_TEAMS.len())];
            let start = self.recent_date(4);
            self.episode(cc(SNOMED, &codes::REFERRAL), team, start, k == 0);
        }
    }

    fn community_flags(&mut self) {
        if self.age() >= 70 || self.rng.gen_bool(0.3) {
            let d = self.recent_date(2);
            self.flag(SNOMED, &codes::FALLS, "clinical", d, None);
        }
        // A DNACPR decision, as palliative care teams hold it: a flag coded as such.
        if self.age() >= 80 && self.rng.gen_bool(0.4) {
            let d = self.recent_date(2);
            self.flag(
                SNOMED,
                &codes::DNACPR,
                "clinical",
                d,
                Some("DNACPR: do not attempt cardiopulmonary resuscitation. Form at home.".into()),
            );
        }
    }

    /// Seasonal flu every autumn for the over-65s (the last few seasons), and the
    /// pneumococcal vaccine once.
    fn community_immunisations(&mut self) {
        if self.age() < 65 {
            return;
        }
        let year = self.today().year();
        for y in (year - 3)..year {
            let Some(d) = NaiveDate::from_ymd_opt(y, 10, self.rng.gen_range(1..=28)) else {
                continue;
            };
            if d >= self.today() || self.rng.gen_bool(0.2) {
                continue;
            }
            self.immunisation(&codes::FLU_VACCINE, d);
        }
        if self.rng.gen_bool(0.7) {
            let d = self.recent_date(6);
            self.immunisation(&codes::PNEUMOCOCCAL_VACCINE, d);
        }
    }

    fn immunisation(&mut self, vaccine: &Code, d: NaiveDate) {
        let batch = format!("B{}", self.rng.gen_range(10_000..99_999));
        let r = json!({
            "resourceType": "Immunization",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "completed",
            "vaccineCode": cc(codes::CVX, vaccine),
            "patient": self.subject(),
            "occurrenceDateTime": day(d),
            "recorded": day(d),
            "primarySource": true,
            "lotNumber": batch,
            "performer": [{ "actor": self.provider.clone() }],
        });
        self.out.push(r);
    }

    /// The community team caring for the patient now, when there is one.
    fn community_care_teams(&mut self) {
        if self.age() < 60 && !self.rng.gen_bool(0.2) {
            return;
        }
        let team = codes::COMMUNITY_TEAMS[self.rng.gen_range(0..codes::COMMUNITY_TEAMS.len())];
        let start = self.recent_date(3);
        let r = json!({
            "resourceType": "CareTeam",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": "active",
            "name": team,
            "subject": self.subject(),
            "period": { "start": day(start) },
            "participant": [{
                "role": [{ "text": "Named nurse" }],
                "member": { "type": "PractitionerRole", "display": format!("Named nurse, {team}") },
            }],
            "managingOrganization": [self.provider.clone()],
        });
        self.out.push(r);
    }

    // ---- social care ------------------------------------------------------------------------

    fn social_care_plans(&mut self) {
        let n = self.count(1, 3);
        for k in 0..n {
            let title =
                codes::SOCIAL_CARE_PLANS[self.rng.gen_range(0..codes::SOCIAL_CARE_PLANS.len())];
            let category = json!({ "coding": [
                { "system": SNOMED, "code": codes::CARE_PLAN.code, "display": codes::CARE_PLAN.display },
                { "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/care-plan-type",
                  "code": title.to_lowercase().replace([' ', '\''], "-"), "display": title },
            ], "text": title });
            let start = self.recent_date(3);
            let description = format!(
                "{title}: two calls a day for personal care; meals on wheels; key safe at the property."
            );
            self.care_plan(category, title, &description, start, k == 0, false);
        }
    }

    fn social_contacts(&mut self) {
        let n = self.rng.gen_range(1..=4) + if self.t.large { 2 } else { 0 };
        for k in 0..n {
            let rel = codes::RELATIONSHIPS[self.rng.gen_range(0..codes::RELATIONSHIPS.len())];
            let female = matches!(rel.code, "DAU" | "WIFE" | "SIS")
                || (!matches!(rel.code, "SON" | "HUSB" | "BRO") && self.rng.gen_bool(0.5));
            let given_list = if female {
                names::GIVEN_FEMALE
            } else {
                names::GIVEN_MALE
            };
            let given = given_list[self.rng.gen_range(0..given_list.len())].to_owned();
            let family = if matches!(rel.code, "NBOR" | "FRND") {
                names::SURNAMES[self.rng.gen_range(0..names::SURNAMES.len())].to_owned()
            } else {
                self.p.family.clone()
            };
            let given = if self.t.hostile && k == 0 {
                format!("{given}{IMG}")
            } else {
                given
            };
            let d = self.recent_date(3);
            let r = json!({
                "resourceType": "RelatedPerson",
                "id": self.next_id(),
                "meta": self.meta(d, false),
                "active": true,
                "patient": self.subject(),
                "relationship": [cc(codes::ROLE_CODE, &rel)],
                "name": [{ "family": family, "given": [given] }],
                "telecom": [{ "system": "phone", "value": format!("07700 900{:03}", self.rng.gen_range(0..1000)), "use": "mobile" }],
            });
            self.out.push(r);
        }
    }

    fn social_assessments(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/document-category",
            "code": "assessment",
            "display": "Assessment",
        }]});
        let n = self.count(2, 8);
        for _ in 0..n {
            let title =
                codes::SOCIAL_ASSESSMENTS[self.rng.gen_range(0..codes::SOCIAL_ASSESSMENTS.len())];
            let type_ = json!({ "coding": [{
                "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/assessment-type",
                "code": title.to_lowercase().replace([' ', '\''], "-"),
                "display": title,
            }], "text": title });
            let d = self.recent_date(4);
            let text = format!(
                "{title}\n\nCompleted {} at home with the person and their daughter present. Eligible needs identified \
                 under the Care Act 2014: personal care, nutrition, maintaining a habitable home.",
                day(d)
            );
            self.document(
                type_,
                category.clone(),
                title,
                &text,
                "text/plain",
                d,
                false,
            );
        }
    }

    fn social_episodes(&mut self) {
        let n = self.rng.gen_range(1..=2);
        for k in 0..n {
            let type_ = json!({ "coding": [{
                "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/case-type",
                "code": "allocated-case",
                "display": "Allocated case",
            }]});
            let team = format!("Adult Care Services {} locality team", self.p.town);
            let start = self.recent_date(4);
            self.episode(type_, &team, start, k == 0);
        }
    }

    /// Lasting powers of attorney for health and welfare and advance decisions to refuse
    /// treatment, as the council's adult social care system records them: `Consent`
    /// (scope `adr`, the decision's SNOMED CT code as its category).
    fn social_legal_decisions(&mut self) {
        if self.age() < 70 {
            return;
        }
        if self.rng.gen_bool(0.35) {
            let d = self.recent_date(8);
            let rel = codes::RELATIONSHIPS[self.rng.gen_range(0..4)];
            self.legal_consent(
                &codes::LPA_HEALTH,
                "permit",
                d,
                Some(("Attorney", rel.display)),
            );
        }
        if self.rng.gen_bool(0.15) {
            let d = self.recent_date(8);
            self.legal_consent(&codes::ADRT, "deny", d, None);
        }
    }

    fn legal_consent(
        &mut self,
        code: &Code,
        provision: &str,
        d: NaiveDate,
        actor: Option<(&str, &str)>,
    ) {
        let mut r = json!({
            "resourceType": "Consent",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "active",
            "scope": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "adr", "display": "Advanced Care Directive",
            }]},
            "category": [cc(SNOMED, code)],
            "patient": self.subject(),
            "dateTime": day(d),
            "organization": [self.provider.clone()],
            "policy": [{ "uri": "https://www.legislation.gov.uk/ukpga/2005/9" }],
            "provision": { "type": provision, "period": { "start": day(d) } },
        });
        if let Some((role, who)) = actor {
            r["provision"]["actor"] = json!([{
                "role": { "text": role },
                "reference": { "display": format!("The patient's {who}") },
            }]);
        }
        self.out.push(r);
    }

    fn social_flags(&mut self) {
        let system = "https://fhir.hertfordshire.gov.uk/CodeSystem/alert";
        let n = self.rng.gen_range(0..=3);
        let mut picks: Vec<usize> = (0..codes::SOCIAL_FLAGS.len()).collect();
        picks.shuffle(&mut self.rng);
        for (k, i) in picks
            .into_iter()
            .take(n.max(usize::from(self.t.hostile)))
            .enumerate()
        {
            let d = self.recent_date(3);
            let text = (self.t.hostile && k == 0).then(|| format!("{RLO} {ZERO_WIDTH}"));
            let category = if i == 2 { "safety" } else { "admin" };
            self.flag(system, &codes::SOCIAL_FLAGS[i], category, d, text);
        }
    }
}
