//! Measures the index at regional size: bulk upsert of synthetic patients, then NHS-number
//! lookups and demographic searches.
//!
//! ```text
//! cargo run --release -p mcr-store --example bulk_insert -- sqlite   [COUNT] [BATCH]
//! cargo run --release -p mcr-store --example bulk_insert -- postgres [COUNT] [BATCH]
//! ```
//!
//! COUNT defaults to 1,500,000 (Hertfordshire and West Essex), BATCH (patients per
//! `upsert_patients` call, one transaction each) to 10,000. PostgreSQL comes from
//! `MCR_TEST_POSTGRES_URL` or a throwaway cluster (see mcr-testkit); SQLite is a file in a
//! temporary directory. Everything is synthetic.

use chrono::NaiveDate;
use mcr_domain::Clock;
use mcr_domain::NhsNumber;
use mcr_store::{connect_and_migrate, DemographicQuery, IndexedPatient};
use std::time::{Duration, Instant};

const FAMILIES: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
];
const SYLLABLES: &[&str] = &[
    "ab", "ber", "cot", "dal", "ell", "fen", "gar", "hol", "ing", "ley", "mor", "ton",
];
const GIVEN: &[&str] = &[
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Muhammad",
    "Thomas",
    "Oscar",
    "William",
    "James",
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Isabella",
    "Mia",
    "Poppy",
    "Ella",
    "Lily",
    "Mary",
    "Margaret",
    "Susan",
    "Patricia",
    "Elizabeth",
    "John",
    "David",
    "Peter",
    "Michael",
    "Sarah",
    "Jennifer",
    "Karen",
    "Anne",
    "Paul",
    "Mark",
];

/// A small deterministic generator (xorshift64*): the same data on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn nhs_numbers(count: usize) -> Vec<NhsNumber> {
    (900_000_000u32..)
        .filter_map(|k| {
            let mut first9 = [0u8; 9];
            let mut v = k;
            for d in first9.iter_mut().rev() {
                *d = (v % 10) as u8;
                v /= 10;
            }
            NhsNumber::from_first_nine(first9)
        })
        .take(count)
        .collect()
}

fn family(rng: &mut Rng) -> String {
    // Half the population shares the 100 commonest names (Smith alone ~1 in 200: realistic
    // skew); the rest have rarer, made-up names.
    if rng.below(2) == 0 {
        let i = rng.below(FAMILIES.len()).min(rng.below(FAMILIES.len()));
        FAMILIES[i].to_owned()
    } else {
        let mut s = String::new();
        for _ in 0..3 {
            s.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
        }
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    }
}

fn patients(count: usize) -> Vec<IndexedPatient> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = NaiveDate::from_ymd_opt(1920, 1, 1).unwrap_or_default();
    let now = mcr_domain::SystemClock.now();
    nhs_numbers(count)
        .into_iter()
        .map(|nhs| IndexedPatient {
            nhs_number: nhs,
            family: family(&mut rng),
            given: format!(
                "{} {}",
                GIVEN[rng.below(GIVEN.len())],
                GIVEN[rng.below(GIVEN.len())]
            ),
            birth_date: base + chrono::Days::new(rng.below(365 * 100) as u64),
            gender: Some(if rng.below(2) == 0 { "female" } else { "male" }.to_owned()),
            postcode: Some(format!(
                "SG{} {}A{}",
                rng.below(20),
                rng.below(10),
                (b'A' + rng.below(26) as u8) as char
            )),
            gp_practice: Some(format!("E82{:03}", rng.below(200))),
            updated_at: now,
        })
        .collect()
}

fn p(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[expect(clippy::print_stdout, reason = "a measuring program reports on stdout")]
#[expect(
    clippy::unwrap_used,
    reason = "a measuring program may stop at the first failure"
)]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("sqlite");
    let count: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500_000);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        "sqlite" => mcr_testkit::sqlite_url(dir.path()),
        "postgres" => mcr_testkit::postgres_url().await,
        other => panic!("backend is sqlite or postgres, not {other}"),
    };
    let store = connect_and_migrate(&url).await.unwrap();

    let t = Instant::now();
    let all = patients(count);
    println!("generated {count} patients in {:.2?}", t.elapsed());

    let t = Instant::now();
    for chunk in all.chunks(batch) {
        store.upsert_patients(chunk).await.unwrap();
    }
    let insert = t.elapsed();
    println!(
        "{backend}: inserted {count} patients in batches of {batch} in {insert:.2?} ({:.0} rows/s)",
        count as f64 / insert.as_secs_f64()
    );
    let t = Instant::now();
    for chunk in all.chunks(batch).take(10) {
        store.upsert_patients(chunk).await.unwrap();
    }
    println!(
        "{backend}: re-upserted (all conflicts) {} patients in {:.2?}",
        batch * 10,
        t.elapsed()
    );
    assert_eq!(store.patient_count().await.unwrap(), count as u64);

    let mut rng = Rng(42);
    let mut lookups = Vec::new();
    for _ in 0..20_000 {
        let p = &all[rng.below(all.len())];
        let t = Instant::now();
        let found = store.patient(&p.nhs_number).await.unwrap();
        lookups.push(t.elapsed());
        assert!(found.is_some());
    }
    lookups.sort();
    println!(
        "{backend}: NHS number lookup p50 {:.2?} p99 {:.2?} max {:.2?}",
        p(&lookups, 0.5),
        p(&lookups, 0.99),
        lookups[lookups.len() - 1]
    );

    type MakeQuery = fn(&IndexedPatient) -> DemographicQuery;
    let kinds: [(&str, MakeQuery); 4] = [
        ("family+birth date", |p| DemographicQuery {
            family: p.family.clone(),
            birth_date: Some(p.birth_date),
            ..Default::default()
        }),
        ("family+given+birth date+postcode", |p| DemographicQuery {
            family: p.family.clone(),
            given: Some(p.given.clone()),
            birth_date: Some(p.birth_date),
            postcode: p.postcode.clone(),
        }),
        ("family+given prefix", |p| DemographicQuery {
            family: p.family.clone(),
            given: Some(p.given[..3].to_owned()),
            ..Default::default()
        }),
        ("family only", |p| DemographicQuery {
            family: p.family.clone(),
            ..Default::default()
        }),
    ];
    for (name, make) in kinds {
        let mut times = Vec::new();
        for _ in 0..2_000 {
            let q = make(&all[rng.below(all.len())]);
            let t = Instant::now();
            let found = store.search_patients(&q, 50).await.unwrap();
            times.push(t.elapsed());
            assert!(!found.is_empty());
        }
        times.sort();
        println!(
            "{backend}: search {name} (limit 50) p50 {:.2?} p99 {:.2?} max {:.2?}",
            p(&times, 0.5),
            p(&times, 0.99),
            times[times.len() - 1]
        );
    }
}
