//! The population: deterministic randomness (every draw seeded from the region's seed and
//! what it is for) and the people themselves, with unique NHS numbers from the test ranges.

use crate::{names, Person};
use chrono::NaiveDate;
use mcr_domain::{NhsNumber, OdsCode, OrgKind, Organisation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

const TAG_DEMOGRAPHICS: u64 = 0xD3;
pub(crate) const TAG_MEMBERSHIP: u64 = 0x3E;
pub(crate) const TAG_SAMPLES: u64 = 0x5A;
const TAG_NHS: u64 = 0x4E;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(crate) fn mix(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix(seed), |h, p| splitmix(h ^ splitmix(*p)))
}

pub(crate) fn rng_for(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, parts))
}

pub(crate) fn str_tag(s: &str) -> u64 {
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Demographics

/// Hands out unique NHS numbers: the reserved test range 999 first (about 909,000 valid numbers),
/// then 998, 997 ... (never issued in England) once that is used up.
pub(crate) struct NhsAllocator {
    counter: u64,
    offset: u64,
}

impl NhsAllocator {
    const BLOCK: u64 = 1_000_000;
    /// Coprime with 10^6, so `(MULT * c + offset) mod 10^6` visits every six-digit tail once.
    const MULT: u64 = 736_243;

    pub(crate) fn new(seed: u64) -> Self {
        Self {
            counter: 0,
            offset: mix(seed, &[TAG_NHS]) % Self::BLOCK,
        }
    }

    pub(crate) fn next(&mut self) -> NhsNumber {
        loop {
            let c = self.counter;
            self.counter += 1;
            let block = c / Self::BLOCK;
            let prefix = 999u64.saturating_sub(block);
            let tail = (Self::MULT * (c % Self::BLOCK) + self.offset) % Self::BLOCK;
            let n = prefix * Self::BLOCK + tail;
            let mut digits = [0u8; 9];
            let mut x = n;
            for d in digits.iter_mut().rev() {
                *d = u8::try_from(x % 10).expect("a digit is below 10");
                x /= 10;
            }
            if let Some(nhs) = NhsNumber::from_first_nine(digits) {
                return nhs;
            }
        }
    }
}

pub(crate) fn practices() -> Vec<Organisation> {
    names::GP_PRACTICES
        .iter()
        .map(|(code, name)| Organisation {
            code: OdsCode::parse(code).expect("practice codes are constants in the right shape"),
            name: (*name).to_owned(),
            kind: OrgKind::GpPractice,
            member: true,
            suspended: false,
        })
        .collect()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn age_years(rng: &mut ChaCha8Rng) -> i64 {
    // Roughly the age structure of England.
    let band: f64 = rng.gen();
    if band < 0.21 {
        rng.gen_range(0..18)
    } else if band < 0.48 {
        rng.gen_range(18..40)
    } else if band < 0.80 {
        rng.gen_range(40..65)
    } else if band < 0.96 {
        rng.gen_range(65..85)
    } else {
        rng.gen_range(85..101)
    }
}

/// Demographics only: `n` people, unique NHS numbers, fast (no FHIR). Person `i` depends only
/// on `(seed, i, today)` and the NHS numbers handed out before it.
pub fn demographics(seed: u64, n: usize, today: NaiveDate) -> Vec<Person> {
    let practices: Vec<OdsCode> = names::GP_PRACTICES
        .iter()
        .map(|(c, _)| OdsCode::parse(c).expect("constant"))
        .collect();
    let mut nhs = NhsAllocator::new(seed);
    let mut out = Vec::with_capacity(n);
    for index in 0..n {
        let mut rng = rng_for(seed, &[TAG_DEMOGRAPHICS, index as u64]);
        let g: f64 = rng.gen();
        let gender = if g < 0.493 {
            "male"
        } else if g < 0.992 {
            "female"
        } else if g < 0.996 {
            "other"
        } else {
            "unknown"
        };
        let list = match gender {
            "male" => names::GIVEN_MALE,
            "female" => names::GIVEN_FEMALE,
            _ if rng.gen_bool(0.5) => names::GIVEN_MALE,
            _ => names::GIVEN_FEMALE,
        };
        let mut given = vec![(*pick(&mut rng, list)).to_owned()];
        if rng.gen_bool(0.3) {
            let middle = *pick(&mut rng, list);
            if middle != given[0] {
                given.push(middle.to_owned());
            }
        }
        let family = (*pick(&mut rng, names::SURNAMES)).to_owned();
        let days = age_years(&mut rng) * 365 + rng.gen_range(0..365);
        let birth_date = today - chrono::Duration::days(days);
        let (district, town) = *pick(&mut rng, names::DISTRICTS);
        let postcode = format!(
            "{district} {}{}{}",
            rng.gen_range(0..10),
            char::from(*pick(&mut rng, names::UNIT_LETTERS)),
            char::from(*pick(&mut rng, names::UNIT_LETTERS)),
        );
        let address_line = format!(
            "{} {}",
            rng.gen_range(1..180),
            pick(&mut rng, names::STREETS)
        );
        let phone = format!("07700 900{:03}", rng.gen_range(0..1000));
        let gp_practice = pick(&mut rng, &practices).clone();
        out.push(Person {
            index,
            nhs_number: nhs.next(),
            family,
            given,
            birth_date,
            gender,
            postcode,
            address_line,
            town,
            phone,
            gp_practice,
        });
    }
    out
}
