//! Probabilistic record linkage (Fellegi–Sunter): two records' demographics are compared field
//! by field, each comparison falls in one level (exact, phonetic, a typo, …), and each level
//! carries a weight, log2(m/u), where m is how often the level is seen between two records of
//! one person and u how often between two different people. The sum is the evidence that the
//! two records are one person.
//!
//! Three outcomes: at or above the link threshold the records are linked; between the review
//! threshold and the link threshold a person looks at them; below, nothing. Hard safety rules
//! come on top of the score and can only lower the outcome: twins (same birth date and family,
//! another given name or a different sex) and parent/child namesakes (the same name, birth
//! dates years apart) are never linked automatically, however high the score. A given name a
//! letter apart is a slip of the keys, not another name, unless the first letters differ, the
//! sexes differ, or both spellings are names people hold (`data/given-names.txt`).
//!
//! Pure: plain values in, plain values out. No I/O, no logging (these are names and birth
//! dates).

use chrono::{Datelike, NaiveDate};
use compact_str::CompactString;
use mcr_domain::demographics::{normalise_address_line, normalise_name, normalise_postcode};
use mcr_domain::NhsNumber;
use serde::{Deserialize, Serialize};
use std::fmt;
use text::{damerau_one, given_names, nicknames, typo};
pub use text::{jaro_winkler, soundex};

#[cfg(test)]
mod tests;
mod text;

/// One record's demographics in the form the comparisons need, prepared once.
///
/// Laid out for the matching pass, which compares each index patient with waiting records
/// scattered over a table far larger than the processor's caches: the texts are held inline
/// (names and postcodes are short), and what every pair compares comes first, in the first
/// 128 bytes (two cache lines, which the processor fetches together), so that a pair costs one
/// wait on memory rather than one per field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C, align(128))]
pub struct Prepared {
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    /// The first given name is one people hold ([`given_names`]).
    given_is_a_name: bool,
    /// Boxed: a pointer says whether there is one, and the number itself is read only when
    /// both records have one.
    pub nhs_number: Option<Box<NhsNumber>>,
    /// Normalised (`SG12AB`); empty when unknown.
    pub postcode: CompactString,
    pub family: CompactString,
    /// The first given name.
    pub given: CompactString,
    /// The address's first line, normalised ([`normalise_address_line`]); empty when unknown.
    /// Compared, never shown.
    pub address: CompactString,
    pub family_sound: [u8; 4],
    pub given_sound: [u8; 4],
    /// The digits of `address` (its house and flat numbers), to tell another house at once.
    address_digits: CompactString,
    /// All the given names written as one (`ISABELLA` of `Isabe lla`); empty when there is
    /// only one.
    pub given_whole: CompactString,
    /// The nickname groups holding the first given name ([`nicknames::groups_of`]).
    given_nicknames: u128,
}

// What every pair compares, within the first two cache lines.
const _: () =
    assert!(std::mem::offset_of!(Prepared, address) + std::mem::size_of::<CompactString>() <= 128);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
    /// Not given, or `other` / `unknown`: never evidence either way.
    Unknown,
}

impl Sex {
    pub fn from_fhir(gender: Option<&str>) -> Self {
        match gender {
            Some("male") => Sex::Male,
            Some("female") => Sex::Female,
            _ => Sex::Unknown,
        }
    }
}

impl Prepared {
    pub fn new(
        family: &str,
        given: &str,
        birth_date: Option<NaiveDate>,
        gender: Option<&str>,
        postcode: Option<&str>,
        nhs_number: Option<NhsNumber>,
    ) -> Self {
        let family = normalise_name(family);
        let mut names = given
            .split_whitespace()
            .map(normalise_name)
            .filter(|g| !g.is_empty());
        let given = CompactString::from(names.next().unwrap_or_default());
        let mut given_whole = CompactString::default();
        if let Some(more) = names.next() {
            given_whole = given.clone() + &more;
            names.for_each(|n| given_whole.push_str(&n));
        }
        let family = CompactString::from(family);
        Self {
            family_sound: soundex(&family),
            given_sound: soundex(&given),
            given_nicknames: nicknames::groups_of(&given),
            given_is_a_name: given_names::get().contains(given.as_str()),
            family,
            given,
            given_whole,
            birth_date,
            sex: Sex::from_fhir(gender),
            postcode: postcode.map(normalise_postcode).unwrap_or_default().into(),
            address: CompactString::default(),
            address_digits: CompactString::default(),
            nhs_number: nhs_number.map(Box::new),
        }
    }

    /// The same, with the first line of the address (as written, or already normalised).
    pub fn with_address(mut self, line: Option<&str>) -> Self {
        self.address = line.map(normalise_address_line).unwrap_or_default().into();
        self.address_digits = self.address.chars().filter(char::is_ascii_digit).collect();
        self
    }

    /// The given names written as one.
    fn given_whole(&self) -> &str {
        if self.given_whole.is_empty() {
            &self.given
        } else {
            &self.given_whole
        }
    }

    /// The postcode's outward code (`SG1` of `SG1 2AB`), when the postcode is whole.
    fn district(&self) -> Option<&str> {
        (self.postcode.len() >= 5).then(|| &self.postcode[..self.postcode.len() - 3])
    }

    /// The outward code and the first digit of the inward code (`SG1 2`).
    fn sector(&self) -> Option<&str> {
        (self.postcode.len() >= 5).then(|| &self.postcode[..self.postcode.len() - 2])
    }
}

macro_rules! levels {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

levels!(
    /// Family name, best level first.
    FamilyLevel { Exact = "exact", Swapped = "swapped-with-given", Typo = "typo", Phonetic = "phonetic", Similar = "similar", Differs = "differs", Missing = "missing" }
);
levels!(
    /// First given name, best level first.
    GivenLevel { Exact = "exact", Nickname = "nickname", Typo = "typo", Phonetic = "phonetic", Initial = "initial", Differs = "differs", Missing = "missing" }
);
levels!(
    /// Date of birth.
    DobLevel { Exact = "exact", DayMonthSwapped = "day-month-swapped", OneDigit = "one-digit", SameYear = "year-only", Differs = "differs", Missing = "missing" }
);
levels!(
    /// Administrative sex.
    SexLevel { Agree = "agree", Differs = "differs", Missing = "missing" }
);
levels!(
    /// Postcode: the whole code, its sector, its district, or the whole code a slip of one key
    /// from the other in another sector (weighed as a sector: `SG1 2AB` and `SG1 3AB`; FEBRL's
    /// four-digit codes, which have no sectors).
    PostcodeLevel { Full = "full", Sector = "sector", District = "district", Typo = "typo", Differs = "differs", Missing = "missing" }
);
levels!(
    /// The address's first line (house number or name, and street): the same; a slip of the
    /// keys (Jaro-Winkler at least 0.92, or one insertion, deletion, substitution or
    /// transposition); another; missing.
    AddressLevel { Exact = "exact", Typo = "typo", Differs = "differs", Missing = "missing" }
);
levels!(
    /// NHS number.
    NhsLevel { Agree = "agree", Differs = "differs", Missing = "missing" }
);

/// The comparison vector: which level each field fell in. Demographic categories only, never
/// the values compared, so it may be stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Agreement {
    pub family: FamilyLevel,
    pub given: GivenLevel,
    pub birth_date: DobLevel,
    pub sex: SexLevel,
    pub postcode: PostcodeLevel,
    pub address: AddressLevel,
    pub nhs_number: NhsLevel,
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "family={} given={} birth-date={} sex={} postcode={} address={} nhs-number={}",
            self.family.code(),
            self.given.code(),
            self.birth_date.code(),
            self.sex.code(),
            self.postcode.code(),
            self.address.code(),
            self.nhs_number.code()
        )
    }
}

impl Agreement {
    /// Read back what [`fmt::Display`] wrote. A vector kept before addresses were compared
    /// has no `address`: missing.
    pub fn parse(s: &str) -> Option<Self> {
        let mut fields = std::collections::HashMap::new();
        for part in s.split_whitespace() {
            let (k, v) = part.split_once('=')?;
            fields.insert(k, v);
        }
        Some(Self {
            family: FamilyLevel::parse(fields.get("family")?)?,
            given: GivenLevel::parse(fields.get("given")?)?,
            birth_date: DobLevel::parse(fields.get("birth-date")?)?,
            sex: SexLevel::parse(fields.get("sex")?)?,
            postcode: PostcodeLevel::parse(fields.get("postcode")?)?,
            address: match fields.get("address") {
                Some(a) => AddressLevel::parse(a)?,
                None => AddressLevel::Missing,
            },
            nhs_number: NhsLevel::parse(fields.get("nhs-number")?)?,
        })
    }
}

/// Which weights the matching pass uses (`[matching] weights`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsMode {
    /// [`Weights::default`] (or those given to the indexer).
    #[default]
    Configured,
    /// Estimated from each pass's own pairs ([`crate::estimate`]), starting from the
    /// configured ones; the configured ones when there are too few pairs to estimate from.
    Estimated,
}

/// `[matching]`: how the index matches records without an NHS number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingSettings {
    /// `"configured"` (the default) or `"estimated"`.
    pub weights: WeightsMode,
}

/// The weight, log2(m/u), of each level. The defaults are set from what registers are known
/// to hold (about 1 in 10 people move in a year, 1 in 50 records has a typo in a name, birth
/// dates are spread over ~30,000 days) and checked against the linkage benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub family: [f64; 7],
    pub given: [f64; 7],
    pub birth_date: [f64; 6],
    pub sex: [f64; 3],
    pub postcode: [f64; 6],
    /// Weights set before addresses were compared have none: the default's.
    #[serde(default = "default_address_weights")]
    pub address: [f64; 4],
    pub nhs_number: [f64; 3],
    /// At or above: linked automatically (unless a safety rule holds it back).
    pub link_at: f64,
    /// At or above, below `link_at`: sent to review.
    pub review_at: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            //      exact swapped typo phonetic similar differs missing
            family: [8.2, 8.0, 5.0, 3.0, 1.0, -4.0, 0.0],
            //     exact nickname typo phonetic initial differs missing
            given: [6.5, 5.0, 4.0, 2.5, 0.0, -5.0, 0.0],
            //          exact swapped one-digit year differs missing
            birth_date: [14.0, 8.0, 5.0, -1.0, -6.0, 0.0],
            //    agree differs missing
            sex: [1.0, -7.0, 0.0],
            //        full sector district typo differs missing
            postcode: [10.0, 3.5, 1.0, 3.5, -3.0, 0.0],
            address: default_address_weights(),
            //          agree differs missing
            nhs_number: [20.0, -6.0, 0.0],
            link_at: 22.0,
            review_at: 15.0,
        }
    }
}

/// exact typo differs missing. Evidence only for: a different first line says little the
/// postcode has not said already (people who moved differ in both), and within one postcode
/// neighbours differ in it anyway.
fn default_address_weights() -> [f64; 4] {
    [4.0, 2.0, 0.0, 0.0]
}

fn index_of<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

impl Weights {
    pub fn weight(&self, a: &Agreement) -> f64 {
        self.family[index_of(FamilyLevel::ALL, &a.family)]
            + self.given[index_of(GivenLevel::ALL, &a.given)]
            + self.birth_date[index_of(DobLevel::ALL, &a.birth_date)]
            + self.sex[index_of(SexLevel::ALL, &a.sex)]
            + self.postcode[index_of(PostcodeLevel::ALL, &a.postcode)]
            + self.address[index_of(AddressLevel::ALL, &a.address)]
            + self.nhs_number[index_of(NhsLevel::ALL, &a.nhs_number)]
    }

    /// The weight without the NHS number: what the demographics alone say.
    pub fn demographic_weight(&self, a: &Agreement) -> f64 {
        self.weight(a) - self.nhs_number[index_of(NhsLevel::ALL, &a.nhs_number)]
    }
}

/// Why a pair that scores high enough is still not linked automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Guard {
    /// Same birth date and family name, but a different given name or sex: twins look like this.
    PossibleTwin,
    /// The same name, birth dates years apart: a parent and child namesake look like this.
    PossibleParentChild,
}

impl Guard {
    pub fn code(self) -> &'static str {
        match self {
            Guard::PossibleTwin => "possible-twin",
            Guard::PossibleParentChild => "possible-parent-child",
        }
    }
}

/// Two records compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub agreement: Agreement,
    pub weight: f64,
    pub guard: Option<Guard>,
}

/// Compare two records field by field.
pub fn compare(a: &Prepared, b: &Prepared, w: &Weights) -> Scored {
    let everything = Reach {
        at: f64::NEG_INFINITY,
        family: 0.0,
        given: 0.0,
        address: 0.0,
    };
    match compare_reaching(a, b, w, &everything) {
        Some(s) => s,
        None => unreachable!("no comparison falls below minus infinity"),
    }
}

/// The weight a comparison must reach to matter (the review threshold, in the matching pass),
/// with the most that the family name, given name and address can add: a pair that cannot
/// reach it is left unfinished ([`compare_reaching`]).
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    at: f64,
    family: f64,
    given: f64,
    address: f64,
}

impl Reach {
    pub fn new(w: &Weights, at: f64) -> Self {
        let most = |levels: &[f64]| levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            at,
            family: most(&w.family),
            given: most(&w.given),
            address: most(&w.address),
        }
    }

    /// The fields already compared weigh `sure`, and those left could add `left` at most:
    /// short of the weight that matters (by more than rounding).
    fn short(&self, sure: f64, left: f64) -> bool {
        sure + left < self.at - 1e-9
    }
}

/// Compare two records field by field, the cheap fields first; `None` as soon as the fields
/// left cannot bring the weight up to `reach`. Most pairs a blocking key brings together are
/// strangers born on the same day, whose family name and address already rule them out: their
/// given names (the dearest comparison) are then never compared. A pair that does reach it is
/// scored exactly as [`compare`] scores it.
pub fn compare_reaching(a: &Prepared, b: &Prepared, w: &Weights, reach: &Reach) -> Option<Scored> {
    let birth_date = dob_level(a.birth_date, b.birth_date);
    let sex = match (a.sex, b.sex) {
        (Sex::Unknown, _) | (_, Sex::Unknown) => SexLevel::Missing,
        (x, y) if x == y => SexLevel::Agree,
        _ => SexLevel::Differs,
    };
    let postcode = postcode_level(a, b);
    let nhs_number = match (&a.nhs_number, &b.nhs_number) {
        (Some(x), Some(y)) if x == y => NhsLevel::Agree,
        (Some(_), Some(_)) => NhsLevel::Differs,
        _ => NhsLevel::Missing,
    };
    let mut sure = w.birth_date[index_of(DobLevel::ALL, &birth_date)]
        + w.sex[index_of(SexLevel::ALL, &sex)]
        + w.postcode[index_of(PostcodeLevel::ALL, &postcode)]
        + w.nhs_number[index_of(NhsLevel::ALL, &nhs_number)];
    if reach.short(sure, reach.family + reach.given + reach.address) {
        return None;
    }
    let family = family_level(a, b);
    sure += w.family[index_of(FamilyLevel::ALL, &family)];
    if reach.short(sure, reach.given + reach.address) {
        return None;
    }
    let address = address_level(a, b);
    sure += w.address[index_of(AddressLevel::ALL, &address)];
    if reach.short(sure, reach.given) {
        return None;
    }
    let agreement = Agreement {
        family,
        // Given and family swapped: the given name is compared crosswise too.
        given: if family == FamilyLevel::Swapped {
            if a.given == b.family && a.family == b.given {
                GivenLevel::Exact
            } else {
                GivenLevel::Typo
            }
        } else {
            given_level(a, b)
        },
        birth_date,
        sex,
        postcode,
        address,
        nhs_number,
    };
    // Summed in the one order every score is, so that a pair on a threshold falls the same
    // side of it however it was compared.
    Some(Scored {
        weight: w.weight(&agreement),
        guard: guard(&agreement, a, b),
        agreement,
    })
}

/// Two given names a letter apart (the typo level) that are one name mistyped, not two names:
/// the first letter kept (names that rhyme differ there: Emma and Gemma, Jayden and Hayden),
/// the sex not recorded differently, and not both names people hold ([`given_names`]): Louis
/// and Louie, Mia and Mila, Louise and Louis are two names each; Margaert is no one's name.
fn slip(x: &Prepared, y: &Prepared) -> bool {
    x.given.as_bytes().first() == y.given.as_bytes().first()
        && !(x.sex != y.sex && x.sex != Sex::Unknown && y.sex != Sex::Unknown)
        && !(x.given_is_a_name && y.given_is_a_name)
}

fn guard(a: &Agreement, x: &Prepared, y: &Prepared) -> Option<Guard> {
    let family_alike = matches!(
        a.family,
        FamilyLevel::Exact | FamilyLevel::Typo | FamilyLevel::Phonetic | FamilyLevel::Similar
    );
    // Twins: the same birth date in one family or household, and a given name that is not
    // this one, or a sex that differs (Louis and Louise). A given name a letter apart is
    // another name unless it is a slip of the keys ([`slip`]): Louis and Louie are two names.
    let another_name = match a.given {
        GivenLevel::Differs | GivenLevel::Initial | GivenLevel::Phonetic => true,
        // Swapped names compare crosswise: a typo there is not another name.
        GivenLevel::Typo => a.family != FamilyLevel::Swapped && !slip(x, y),
        GivenLevel::Exact | GivenLevel::Nickname | GivenLevel::Missing => false,
    };
    let one_address = a.postcode == PostcodeLevel::Full || a.address == AddressLevel::Exact;
    if a.birth_date == DobLevel::Exact
        && (family_alike || one_address)
        && (another_name || (a.given != GivenLevel::Exact && a.sex == SexLevel::Differs))
    {
        return Some(Guard::PossibleTwin);
    }
    if let (Some(p), Some(q)) = (x.birth_date, y.birth_date) {
        let apart = (p.year() - q.year()).abs();
        let not_a_slip = matches!(a.birth_date, DobLevel::SameYear | DobLevel::Differs);
        if not_a_slip && apart >= 12 {
            return Some(Guard::PossibleParentChild);
        }
    }
    None
}

/// When the NHS numbers agree but the person does not: the demographics alone would never
/// link the two (a possible twin, a possible parent or child, or evidence against), or two of
/// given name, birth date and sex disagree outright. A relative's number carried by mistake
/// looks like this: a household shares family name and address, so those say little.
pub fn wrong_nhs_number(s: &Scored, w: &Weights) -> bool {
    let a = &s.agreement;
    let given = a.given == GivenLevel::Differs;
    let dob = matches!(a.birth_date, DobLevel::Differs | DobLevel::SameYear);
    let sex = a.sex == SexLevel::Differs;
    a.nhs_number == NhsLevel::Agree
        && (s.guard.is_some()
            || w.demographic_weight(a) < 0.0
            || u8::from(given) + u8::from(dob) + u8::from(sex) >= 2)
}

fn family_level(a: &Prepared, b: &Prepared) -> FamilyLevel {
    if a.family.is_empty() || b.family.is_empty() {
        return FamilyLevel::Missing;
    }
    if a.family == b.family {
        return FamilyLevel::Exact;
    }
    let jw = jaro_winkler(&a.family, &b.family);
    // Given and family written the other way round, either perhaps with a typo (never both
    // mistyped, and not when the family names alike anyway).
    if !a.given.is_empty() && !b.given.is_empty() {
        let family_given = a.family == b.given;
        let given_family = a.given == b.family;
        let one_mistyped = jw < 0.84
            && ((family_given && typo(&a.given, &b.family))
                || (given_family && typo(&a.family, &b.given)));
        if (family_given && given_family) || one_mistyped {
            return FamilyLevel::Swapped;
        }
    }
    if jw >= 0.92 || damerau_one(&a.family, &b.family) {
        return FamilyLevel::Typo;
    }
    if a.family_sound == b.family_sound {
        return FamilyLevel::Phonetic;
    }
    if jw >= 0.84 {
        return FamilyLevel::Similar;
    }
    FamilyLevel::Differs
}

fn given_level(a: &Prepared, b: &Prepared) -> GivenLevel {
    if a.given.is_empty() || b.given.is_empty() {
        return GivenLevel::Missing;
    }
    // One name, or one written in two parts (`Isabe lla`, `Mary Ann` and `Maryann`).
    if a.given == b.given || a.given_whole() == b.given_whole() {
        return GivenLevel::Exact;
    }
    if a.given.len() == 1 || b.given.len() == 1 {
        return if a.given.as_bytes()[0] == b.given.as_bytes()[0] {
            GivenLevel::Initial
        } else {
            GivenLevel::Differs
        };
    }
    if a.given_nicknames & b.given_nicknames != 0 {
        return GivenLevel::Nickname;
    }
    if typo(&a.given, &b.given) {
        return GivenLevel::Typo;
    }
    if a.given_sound == b.given_sound {
        return GivenLevel::Phonetic;
    }
    GivenLevel::Differs
}

fn dob_level(a: Option<NaiveDate>, b: Option<NaiveDate>) -> DobLevel {
    let (Some(a), Some(b)) = (a, b) else {
        return DobLevel::Missing;
    };
    if a == b {
        return DobLevel::Exact;
    }
    if a.year() == b.year() && a.month() == b.day() && a.day() == b.month() {
        return DobLevel::DayMonthSwapped;
    }
    if one_digit_apart(a, b) {
        return DobLevel::OneDigit;
    }
    if a.year() == b.year() {
        return DobLevel::SameYear;
    }
    DobLevel::Differs
}

/// One digit of `YYYYMMDD` differs, and not one of the year's first three (a slip of a key,
/// not a decade). Worked out on the numbers: this runs for most pairs compared.
fn one_digit_apart(a: NaiveDate, b: NaiveDate) -> bool {
    let number = |d: NaiveDate| {
        i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
    };
    let (mut x, mut y) = (number(a), number(b));
    if !(0..100_000_000).contains(&x) || !(0..100_000_000).contains(&y) {
        return false;
    }
    // Digits from the right: 0-1 the day, 2-3 the month, 4-7 the year (7 its first).
    let mut differing = 0;
    let mut leftmost = 0;
    for position in 0..8 {
        if x % 10 != y % 10 {
            differing += 1;
            leftmost = position;
        }
        x /= 10;
        y /= 10;
    }
    differing == 1 && leftmost <= 4
}

fn address_level(a: &Prepared, b: &Prepared) -> AddressLevel {
    if a.address.is_empty() || b.address.is_empty() {
        return AddressLevel::Missing;
    }
    if a.address == b.address {
        return AddressLevel::Exact;
    }
    // A slip of the keys, but never another house number: `12 MILL LANE` and `14 MILL LANE`
    // are neighbours. The numbers first: most pairs differ there, and cheaply.
    if a.address_digits == b.address_digits
        && (jaro_winkler(&a.address, &b.address) >= 0.92 || damerau_one(&a.address, &b.address))
    {
        return AddressLevel::Typo;
    }
    AddressLevel::Differs
}

fn postcode_level(a: &Prepared, b: &Prepared) -> PostcodeLevel {
    if a.postcode.is_empty() || b.postcode.is_empty() {
        return PostcodeLevel::Missing;
    }
    if a.postcode == b.postcode {
        return PostcodeLevel::Full;
    }
    match (a.sector(), b.sector()) {
        (Some(x), Some(y)) if x == y => return PostcodeLevel::Sector,
        _ => {}
    }
    if one_key_apart(a.postcode.as_bytes(), b.postcode.as_bytes()) {
        return PostcodeLevel::Typo;
    }
    match (a.district(), b.district()) {
        (Some(x), Some(y)) if x == y => PostcodeLevel::District,
        _ => PostcodeLevel::Differs,
    }
}

/// The same length, and one character different or two neighbours swapped: a slip of a key
/// (codes of four characters or more).
fn one_key_apart(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.len() < 4 {
        return false;
    }
    let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) else {
        return false;
    };
    a[i + 1..] == b[i + 1..]
        || (i + 1 < a.len() && a[i] == b[i + 1] && a[i + 1] == b[i] && a[i + 2..] == b[i + 2..])
}
