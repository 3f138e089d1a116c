use super::*;

fn d(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn p(family: &str, given: &str, dob: &str, sex: &str, postcode: &str) -> Prepared {
    Prepared::new(family, given, d(dob), Some(sex), Some(postcode), None)
}

fn verdict(a: &Prepared, b: &Prepared) -> (&'static str, Scored) {
    let w = Weights::default();
    let s = compare(a, b, &w);
    let v = if s.weight >= w.link_at && s.guard.is_none() {
        "link"
    } else if s.weight >= w.review_at || (s.weight >= w.link_at) {
        "review"
    } else {
        "none"
    };
    (v, s)
}

#[test]
fn soundex_and_jaro_winkler_as_published() {
    assert_eq!(&soundex("ROBERT"), b"R163");
    assert_eq!(&soundex("RUPERT"), b"R163");
    assert_eq!(&soundex("ASHCRAFT"), b"A261");
    assert_eq!(&soundex("TYMCZAK"), b"T522");
    assert_eq!(&soundex("PFISTER"), b"P236");
    assert!((jaro_winkler("MARTHA", "MARHTA") - 0.9611).abs() < 0.001);
    assert!((jaro_winkler("DWAYNE", "DUANE") - 0.84).abs() < 0.001);
    assert!(damerau_one("SMITH", "SMTIH"));
    assert!(damerau_one("SMITH", "SMITHE"));
    assert!(!damerau_one("SMITH", "SMYTHE"));
}

/// Jaro–Winkler by bits gives what scanning each window gives, to the last bit, on strings
/// of every length up to and past 64, with repeated letters, digits, spaces and bytes outside
/// the table (which fall back to scanning).
#[test]
fn jaro_winkler_by_bits_is_jaro_winkler_by_scan() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let alphabets: [&[u8]; 3] = [
        b"AEILNORST",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789",
        b"AB\xc3\xa9a~",
    ];
    for _ in 0..200_000 {
        let alphabet = alphabets[rng.gen_range(0..alphabets.len())];
        let word = |rng: &mut rand::rngs::StdRng| {
            let n = if rng.gen_bool(0.05) {
                rng.gen_range(60..80)
            } else {
                rng.gen_range(0..12)
            };
            let bytes: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (a, b) = (word(&mut rng), word(&mut rng));
        let (fast, scan) = (jaro_winkler(&a, &b), text::jaro_winkler_by_scan(&a, &b));
        assert_eq!(fast.to_bits(), scan.to_bits(), "{a:?} {b:?}: {fast} {scan}");
    }
}

/// A table of pairs a clinical safety officer would ask about, with the outcome each must get.
#[test]
fn the_cases_a_safety_officer_asks_about() {
    let ann = p("Smith", "Ann", "1950-05-07", "female", "SG1 1AA");
    let cases: &[(&str, Prepared, &str)] = &[
        ("identical", ann.clone(), "link"),
        (
            "moved house",
            p("Smith", "Ann", "1950-05-07", "female", "LU4 9ZZ"),
            "link",
        ),
        (
            "moved, typo in family name",
            p("Smiht", "Ann", "1950-05-07", "female", "LU4 9ZZ"),
            "link",
        ),
        (
            "nickname",
            p("Smith", "Annie", "1950-05-07", "female", "SG1 1AA"),
            "link",
        ),
        (
            "married and stayed",
            p("Jones", "Ann", "1950-05-07", "female", "SG1 1AA"),
            "link",
        ),
        (
            "day and month swapped",
            p("Smith", "Ann", "1950-07-05", "female", "SG1 1AA"),
            "link",
        ),
        (
            "twin sister",
            p("Smith", "Alice", "1950-05-07", "female", "SG1 1AA"),
            "review",
        ),
        (
            "boy/girl twin, near name",
            p("Smith", "Anne", "1950-05-07", "male", "SG1 1AA"),
            "review",
        ),
        (
            "mother and daughter namesake",
            p("Smith", "Ann", "1976-05-07", "female", "SG1 1AA"),
            "review",
        ),
        (
            "a stranger",
            p("Patel", "Ravi", "1980-01-02", "male", "LU1 1AA"),
            "none",
        ),
        (
            "twin, a name that sounds alike",
            p("Smith", "Amy", "1950-05-07", "female", "SG1 1AA"),
            "review",
        ),
        (
            "given and family swapped",
            p("Ann", "Smith", "1950-05-07", "female", "SG1 1AA"),
            "link",
        ),
    ];
    for (what, other, want) in cases {
        let (got, s) = verdict(&ann, other);
        assert_eq!(
            got, *want,
            "{what}: {} weight {:.1} guard {:?}",
            s.agreement, s.weight, s.guard
        );
    }
    // A given name a letter apart on the same birth date and address: two names people
    // hold (Louis and Louie) may be twins, review; a slip of the keys (Margaert, no one's
    // name) is her.
    let margaret = p("Okafor", "Margaret", "1950-05-07", "female", "SG1 1AA");
    let (got, s) = verdict(
        &margaret,
        &p("Okafor", "Margaert", "1950-05-07", "female", "SG1 1AA"),
    );
    assert_eq!(got, "link", "{}", s.agreement);
    assert_eq!(s.guard, None);
    let (got, s) = verdict(
        &p("Yates", "Louis", "1970-11-01", "male", "AL8 2EX"),
        &p("Yates", "Louie", "1970-11-01", "male", "AL8 2EX"),
    );
    assert_eq!((got, s.guard), ("review", Some(Guard::PossibleTwin)));
    let swapped = p("Smith", "Ann", "1950-12-03", "female", "SG1 1AA");
    let (_, s) = verdict(
        &p("Smith", "Ann", "1950-03-12", "female", "SG1 1AA"),
        &swapped,
    );
    assert_eq!(s.agreement.birth_date, DobLevel::DayMonthSwapped);
}

/// A typo in a given name is the same person; twins, however near their names, are not
/// linked: the same birth date, family and address in every case.
#[test]
fn a_typo_in_a_given_name_links_and_twins_do_not() {
    let margaret = p("Okafor", "Margaret", "1950-05-07", "female", "SG1 1AA");
    let typos: &[(&str, Prepared)] = &[
        (
            "letters swapped",
            p("Okafor", "Margaert", "1950-05-07", "female", "SG1 1AA"),
        ),
        (
            "a letter dropped",
            p("Okafor", "Magaret", "1950-05-07", "female", "SG1 1AA"),
        ),
        (
            "a letter dropped, sex not recorded",
            Prepared::new(
                "Okafor",
                "Margaet",
                d("1950-05-07"),
                None,
                Some("SG1 1AA"),
                None,
            ),
        ),
        (
            "the name typed in two parts",
            p("Okafor", "Marga ret", "1950-05-07", "female", "SG1 1AA"),
        ),
        (
            "given and family swapped, one mistyped",
            p("Margaret", "Okafro", "1950-05-07", "female", "SG1 1AA"),
        ),
    ];
    for (what, other) in typos {
        let (got, s) = verdict(&margaret, other);
        assert_eq!(
            (got, s.guard),
            ("link", None),
            "{what}: {} weight {:.1}",
            s.agreement,
            s.weight
        );
    }
    let twins: &[(&str, Prepared, Prepared)] = &[
        (
            "same-sex twins, different names",
            p("Reid", "Oliver", "2001-03-04", "male", "LU2 7QQ"),
            p("Reid", "Noah", "2001-03-04", "male", "LU2 7QQ"),
        ),
        (
            "same-sex twins, two names a letter apart",
            p("Reid", "Mia", "2001-03-04", "female", "LU2 7QQ"),
            p("Reid", "Mila", "2001-03-04", "female", "LU2 7QQ"),
        ),
        (
            "same-sex twins, names that rhyme",
            p("Reid", "Jayden", "2001-03-04", "male", "LU2 7QQ"),
            p("Reid", "Hayden", "2001-03-04", "male", "LU2 7QQ"),
        ),
        (
            "boy/girl twins, near names",
            p("Reid", "Louis", "2001-03-04", "male", "LU2 7QQ"),
            p("Reid", "Louise", "2001-03-04", "female", "LU2 7QQ"),
        ),
        (
            "boy/girl twins, near names",
            p("Reid", "Daniel", "2001-03-04", "male", "LU2 7QQ"),
            p("Reid", "Danielle", "2001-03-04", "female", "LU2 7QQ"),
        ),
        (
            "boy/girl twins, near names, one with no sex recorded",
            p("Reid", "Louis", "2001-03-04", "male", "LU2 7QQ"),
            Prepared::new(
                "Reid",
                "Louise",
                d("2001-03-04"),
                None,
                Some("LU2 7QQ"),
                None,
            ),
        ),
        (
            "boy/girl twins, a name a typo apart",
            p("Reid", "Margaret", "2001-03-04", "female", "LU2 7QQ"),
            p("Reid", "Margaert", "2001-03-04", "male", "LU2 7QQ"),
        ),
    ];
    for (what, a, b) in twins {
        let (got, s) = verdict(a, b);
        assert_ne!(got, "link", "{what}: {}", s.agreement);
        assert_eq!(
            s.guard,
            Some(Guard::PossibleTwin),
            "{what}: {}",
            s.agreement
        );
    }
}

#[test]
fn a_relatives_nhs_number_is_a_wrong_nhs_number() {
    let nhs = NhsNumber::from_first_nine([9, 4, 3, 4, 7, 6, 5, 9, 1]);
    let mother = Prepared::new(
        "Smith",
        "Ann",
        d("1950-05-05"),
        Some("female"),
        Some("SG1 1AA"),
        nhs.clone(),
    );
    let son = Prepared::new(
        "Smith",
        "Tom",
        d("1979-08-01"),
        Some("male"),
        Some("SG1 1AA"),
        nhs.clone(),
    );
    let w = Weights::default();
    let s = compare(&mother, &son, &w);
    assert!(wrong_nhs_number(&s, &w), "{}", s.agreement);
    let other = |family: &str, given: &str, dob: &str, postcode: &str| {
        Prepared::new(
            family,
            given,
            d(dob),
            Some("female"),
            Some(postcode),
            nhs.clone(),
        )
    };
    let married = other("Jones", "Ann", "1950-05-05", "LU1 1AA");
    assert!(!wrong_nhs_number(&compare(&mother, &married, &w), &w));
    // A twin carrying her sister's number: the same birth date, another given name.
    let twin = other("Smith", "Alice", "1950-05-05", "SG1 1AA");
    assert!(wrong_nhs_number(&compare(&mother, &twin, &w), &w));
    // The daughter named after her, with the mother's number.
    let daughter = other("Smith", "Ann", "1976-02-11", "SG1 1AA");
    assert!(wrong_nhs_number(&compare(&mother, &daughter, &w), &w));
    // Her own record with a typo in her name.
    let typo = other("Smith", "Anne", "1950-05-05", "SG1 1AA");
    assert!(!wrong_nhs_number(&compare(&mother, &typo, &w), &w));
}

/// The digit comparison on numbers says what the one on `YYYYMMDD` text says.
#[test]
fn one_digit_apart_as_on_the_written_date() {
    fn on_text(a: NaiveDate, b: NaiveDate) -> bool {
        let (da, db) = (
            a.format("%Y%m%d").to_string(),
            b.format("%Y%m%d").to_string(),
        );
        let differing: Vec<usize> = da
            .bytes()
            .zip(db.bytes())
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, _)| i)
            .collect();
        matches!(differing.as_slice(), [i] if *i >= 3)
    }
    let base = NaiveDate::from_ymd_opt(1950, 1, 1).expect("date");
    let mut agreeing = 0;
    for i in 0..4_000i64 {
        let a = base + chrono::Duration::days(i * 7);
        for j in [1i64, 9, 10, 30, 31, 60, 365, 366, 3_650, 3_653, 36_525] {
            for b in [a + chrono::Duration::days(j), a - chrono::Duration::days(j)] {
                assert_eq!(one_digit_apart(a, b), on_text(a, b), "{a} {b}");
                agreeing += usize::from(on_text(a, b));
            }
        }
    }
    assert!(
        agreeing > 1_000,
        "the table has pairs one digit apart: {agreeing}"
    );
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    assert!(one_digit_apart(d("1950-05-07"), d("1959-05-07")));
    assert!(!one_digit_apart(d("1950-05-07"), d("1850-05-07")));
    assert!(one_digit_apart(d("1950-05-07"), d("1950-05-27")));
}

#[test]
fn a_postcode_a_key_apart_is_a_typo() {
    let level = |x: &str, y: &str| {
        let a = p("Smith", "Ann", "1950-05-05", "female", x);
        let b = p("Smith", "Ann", "1950-05-05", "female", y);
        compare(&a, &b, &Weights::default()).agreement.postcode
    };
    assert_eq!(level("3150", "3159"), PostcodeLevel::Typo);
    assert_eq!(level("2324", "2342"), PostcodeLevel::Typo);
    assert_eq!(level("SG1 2AB", "SG1 3AB"), PostcodeLevel::Typo);
    assert_eq!(level("SG1 2AB", "SG7 2AB"), PostcodeLevel::Typo);
    assert_eq!(level("SG1 2AB", "SG1 2BA"), PostcodeLevel::Sector);
    assert_eq!(level("SG1 2AB", "SG1 4AD"), PostcodeLevel::District);
    assert_eq!(level("2324", "2433"), PostcodeLevel::Differs);
    assert_eq!(level("SG1 2AB", "LU4 9ZZ"), PostcodeLevel::Differs);
    // Her birth date, family name and a postcode a slip away, no given name recorded.
    let ann = p("Smith", "Ann", "1950-05-05", "female", "3150");
    let (got, s) = verdict(&ann, &p("Smith", "", "1950-05-05", "female", "3159"));
    assert_eq!(got, "link", "{} {:.1}", s.agreement, s.weight);
}

#[test]
fn the_comparison_vector_reads_back() {
    let a = p("Smith", "Ann", "1950-05-05", "female", "SG1 1AA");
    let b = p("Smyth", "Annie", "1950-05-05", "female", "SG1 1AB");
    let s = compare(&a, &b, &Weights::default());
    let text = s.agreement.to_string();
    assert_eq!(Agreement::parse(&text), Some(s.agreement), "{text}");
    assert_eq!(s.agreement.postcode, PostcodeLevel::Sector);
    assert_eq!(s.agreement.given, GivenLevel::Nickname);
}

#[test]
fn a_vector_kept_before_addresses_were_compared_reads_back_as_address_missing() {
    let old =
        "family=exact given=exact birth-date=exact sex=agree postcode=full nhs-number=missing";
    let a = Agreement::parse(old).expect("reads");
    assert_eq!(a.address, AddressLevel::Missing);
    assert!(Agreement::parse(&old.replace("postcode=full", "postcode=nowhere")).is_none());
}

/// The address's first line: the same house is evidence, a slip of the keys less so, and
/// another house number in the same street is another house.
#[test]
fn the_first_line_of_the_address_is_compared() {
    let at =
        |line: &str| p("Smith", "Ann", "1950-05-07", "female", "SG1 1AA").with_address(Some(line));
    let level = |x: &str, y: &str| {
        compare(&at(x), &at(y), &Weights::default())
            .agreement
            .address
    };
    assert_eq!(level("12 Mill Lane", "12, MILL LANE."), AddressLevel::Exact);
    assert_eq!(level("12 Mill Lane", "12 Mil Lane"), AddressLevel::Typo);
    assert_eq!(level("12 Mill Lane", "14 Mill Lane"), AddressLevel::Differs);
    assert_eq!(
        level("12 Mill Lane", "3 Station Road"),
        AddressLevel::Differs
    );
    assert_eq!(level("12 Mill Lane", ""), AddressLevel::Missing);
    let w = Weights::default();
    let base = p("Smith", "Ann", "1950-05-07", "female", "SG1 1AA");
    let plain = compare(&base, &base, &w).weight;
    let same_house = compare(&at("12 Mill Lane"), &at("12 Mill Lane"), &w).weight;
    let other_house = compare(&at("12 Mill Lane"), &at("14 Mill Lane"), &w).weight;
    assert_eq!(same_house, plain + w.address[0]);
    // A different line says nothing the postcode has not said: never evidence against.
    assert_eq!(other_house, plain);

    // No postcode and a birth date a digit out: a person looks at it, unless the house agrees.
    let gp =
        p("Adeyemi", "Tolu", "1988-03-02", "female", "LU2 7HQ").with_address(Some("4 Elm Road"));
    let hospital =
        |line: Option<&str>| p("Adeyemi", "Tolu", "1988-03-12", "female", "").with_address(line);
    for (line, want) in [
        (None, "review"),
        (Some("4 Elm Road"), "link"),
        (Some("4 Elm Raod"), "link"),
        (Some("40 Elm Road"), "review"),
    ] {
        let (got, s) = verdict(&gp, &hospital(line));
        assert_eq!(got, want, "{line:?}: {} {:.1}", s.agreement, s.weight);
    }
}

/// Twins share a house as well as a postcode: one address holds a pair back like one
/// postcode does, even where the postcodes were written differently.
#[test]
fn twins_at_one_address_are_held_back_whatever_the_postcodes_say() {
    let louis =
        p("Okafor", "Louis", "2001-06-09", "male", "SG1 1AA").with_address(Some("9 Park View"));
    let louise =
        p("Okafor", "Louise", "2001-06-09", "female", "").with_address(Some("9 Park View"));
    let (got, s) = verdict(&louis, &louise);
    assert_eq!(s.guard, Some(Guard::PossibleTwin), "{}", s.agreement);
    assert_ne!(got, "link");
    // Strangers in one house with one birth date and wholly other names: held back too.
    let other = p("Briggs", "Amir", "2001-06-09", "male", "").with_address(Some("9 Park View"));
    assert_eq!(
        compare(&louis, &other, &Weights::default()).guard,
        Some(Guard::PossibleTwin)
    );
}

#[test]
fn a_names_nickname_groups_meet_exactly_when_the_list_holds_both_names_together() {
    let names: Vec<&str> = nicknames::all()
        .chain(["JOHN", "ZEB", "", "BOBBYY", "ROBERTS"])
        .collect();
    let mut alike = 0;
    for a in &names {
        for b in &names {
            let meet = nicknames::groups_of(a) & nicknames::groups_of(b) != 0;
            assert_eq!(meet, nicknames::alike(a, b), "{a} and {b}");
            alike += usize::from(meet);
        }
    }
    // Every listed name is alike itself and others; the names outside the list are alike none.
    assert!(alike > names.len());
    assert_eq!(nicknames::groups_of("ZEB"), 0);
}

/// A comparison left unfinished is one that could not have reached the threshold, and one
/// finished is scored to the bit as the whole comparison scores it: over pairs of records
/// made alike on purpose (a few names, dates, postcodes and houses, so that every level of
/// every field is met), under the default weights and under weights drawn at random.
#[test]
fn a_comparison_left_unfinished_could_never_have_reached_the_threshold() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let families = ["Smith", "Smyth", "Smiht", "Jones", "Ann", "Okafor", ""];
    let givens = [
        "Ann", "Anne", "Annie", "A", "Smith", "Louis", "Louise", "Mary Ann", "",
    ];
    let dates = [
        "1950-03-12",
        "1950-12-03",
        "1950-03-13",
        "1950-07-01",
        "1990-03-12",
        "",
    ];
    let sexes = ["male", "female", "unknown"];
    let postcodes = ["SG1 2AB", "SG1 2AD", "SG1 3AB", "SG1 9ZZ", "LU4 1AA", ""];
    let lines = [
        "12 Mill Lane",
        "12 Mil Lane",
        "14 Mill Lane",
        "The Old Barn",
        "",
    ];
    let pick = |rng: &mut rand::rngs::StdRng, of: &[&'static str]| of[rng.gen_range(0..of.len())];
    let records: Vec<Prepared> = (0..400)
        .map(|_| {
            p(
                pick(&mut rng, &families),
                pick(&mut rng, &givens),
                pick(&mut rng, &dates),
                pick(&mut rng, &sexes),
                pick(&mut rng, &postcodes),
            )
            .with_address(Some(pick(&mut rng, &lines)))
        })
        .collect();
    let mut random = Weights::default();
    for level in random
        .family
        .iter_mut()
        .chain(&mut random.given)
        .chain(&mut random.birth_date)
        .chain(&mut random.sex)
        .chain(&mut random.postcode)
        .chain(&mut random.address)
        .chain(&mut random.nhs_number)
    {
        *level = rng.gen_range(-10.0..12.0);
    }
    let (mut finished, mut unfinished) = (0, 0);
    for w in [Weights::default(), random] {
        let reach = Reach::new(&w, w.review_at);
        for a in &records {
            for b in &records {
                let whole = compare(a, b, &w);
                match compare_reaching(a, b, &w, &reach) {
                    Some(s) => {
                        assert_eq!(s, whole);
                        assert_eq!(s.weight.to_bits(), whole.weight.to_bits());
                        finished += 1;
                    }
                    None => {
                        assert!(whole.weight < w.review_at, "{}", whole.agreement);
                        unfinished += 1;
                    }
                }
            }
        }
    }
    // Both kinds were met, many times.
    assert!(
        finished > 10_000 && unfinished > 10_000,
        "{finished} {unfinished}"
    );
}
