//! The watch's rules as tables of cases, its settings, and its flags once per window.

use super::*;
use chrono::{NaiveDate, TimeZone};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid time")
}

fn facts<'a>(t: DateTime<Utc>, kind: OrgKind) -> ViewFacts<'a> {
    ViewFacts {
        at: t,
        org_kind: kind,
        user_name: "Dr Asha Patel",
        user_postcode: None,
        patient_family: "Jones",
        patient_postcode: Some("AL1 3ER"),
        protected: None,
        count: ViewCount {
            distinct: 1,
            refused: false,
            oldest: None,
        },
    }
}

fn rules(found: &[Finding]) -> Vec<&'static str> {
    found.iter().map(|f| f.rule.code()).collect()
}

#[test]
fn the_rules_as_a_table_of_cases() {
    let cfg = WatchConfig::default();
    // Tuesday 3 March 2026, 10:00 UTC = 10:00 GMT: inside GP hours.
    let day = at(2026, 3, 3, 10, 0);
    // Tuesday 3 March 2026, 21:30 GMT: outside GP hours.
    let night = at(2026, 3, 3, 21, 30);
    type Case<'a> = (&'a str, ViewFacts<'a>, &'a [&'a str]);
    let count = |distinct, refused| ViewCount {
        distinct,
        refused,
        oldest: None,
    };
    let cases: Vec<Case<'_>> = vec![
        ("an ordinary view", facts(day, OrgKind::GpPractice), &[]),
        (
            "30 patients is at the flag limit, not above it",
            ViewFacts {
                count: count(30, false),
                ..facts(day, OrgKind::GpPractice)
            },
            &[],
        ),
        (
            "31 patients is above it",
            ViewFacts {
                count: count(31, false),
                ..facts(day, OrgKind::GpPractice)
            },
            &["many-patients"],
        ),
        (
            "a refusal is flagged as such, not also as many",
            ViewFacts {
                count: count(61, true),
                ..facts(day, OrgKind::GpPractice)
            },
            &["too-many-patients"],
        ),
        (
            "the user's own family name, normalised",
            ViewFacts {
                patient_family: "PATEL",
                ..facts(day, OrgKind::GpPractice)
            },
            &["same-family-name"],
        ),
        (
            "a family name that only contains the user's is not the same",
            ViewFacts {
                patient_family: "Patel-Smith",
                ..facts(day, OrgKind::GpPractice)
            },
            &[],
        ),
        (
            "a GP practice at night",
            facts(night, OrgKind::GpPractice),
            &["out-of-hours"],
        ),
        (
            "an acute trust at night is an emergency setting",
            facts(night, OrgKind::AcuteTrust),
            &[],
        ),
        (
            "a kind with no hours set is not checked",
            facts(night, OrgKind::CommunityTrust),
            &[],
        ),
        (
            "a GP practice on Saturday morning",
            facts(at(2026, 3, 7, 10, 0), OrgKind::GpPractice),
            &["out-of-hours"],
        ),
        (
            "a protected person",
            ViewFacts {
                protected: Some("staff"),
                ..facts(day, OrgKind::GpPractice)
            },
            &["protected-person"],
        ),
        (
            "everything at once, in rule order",
            ViewFacts {
                protected: Some("public-figure"),
                patient_family: "patel",
                count: count(45, false),
                ..facts(night, OrgKind::GpPractice)
            },
            &[
                "many-patients",
                "same-family-name",
                "out-of-hours",
                "protected-person",
            ],
        ),
    ];
    for (what, f, want) in cases {
        assert_eq!(rules(&assess(&cfg, &f)), want, "{what}");
    }
    let off = WatchConfig {
        same_family_name: false,
        ..WatchConfig::default()
    };
    let f = ViewFacts {
        patient_family: "Patel",
        ..facts(day, OrgKind::GpPractice)
    };
    assert!(assess(&off, &f).is_empty(), "the rule can be switched off");
}

#[test]
fn evidence_says_counts_thresholds_and_postcodes_without_names() {
    let cfg = WatchConfig::default();
    let day = at(2026, 3, 3, 10, 0);
    let many = assess(
        &cfg,
        &ViewFacts {
            count: ViewCount {
                distinct: 31,
                refused: false,
                oldest: None,
            },
            ..facts(day, OrgKind::GpPractice)
        },
    );
    assert_eq!(
        many[0].evidence,
        "Viewed 31 different patients within an hour (flagged above 30; views of more are refused above 60)."
    );
    let same = assess(
        &cfg,
        &ViewFacts {
            patient_family: "Patel",
            user_postcode: Some("al13er"),
            ..facts(day, OrgKind::GpPractice)
        },
    );
    assert_eq!(
        same[0].evidence,
        "The patient has the same family name as the user and the same postcode."
    );
    assert!(!same[0].evidence.to_uppercase().contains("PATEL"));
    let night = assess(&cfg, &facts(at(2026, 7, 1, 22, 15), OrgKind::GpPractice));
    assert_eq!(
        night[0].evidence,
        "Viewed at 23:15 on Wednesday 1 July 2026 (UK time), outside the working hours set for the kind GP practice (Mon-Fri 07:00-19:00)."
    );
}

#[test]
fn uk_time_follows_the_summer_time_rule() {
    let cases = [
        // (UTC, UK local)
        (at(2026, 1, 15, 12, 0), "2026-01-15 12:00"),
        // BST starts 01:00 UTC on Sunday 29 March 2026.
        (at(2026, 3, 29, 0, 59), "2026-03-29 00:59"),
        (at(2026, 3, 29, 1, 0), "2026-03-29 02:00"),
        (at(2026, 7, 1, 6, 30), "2026-07-01 07:30"),
        // BST ends 01:00 UTC on Sunday 25 October 2026.
        (at(2026, 10, 25, 0, 59), "2026-10-25 01:59"),
        (at(2026, 10, 25, 1, 0), "2026-10-25 01:00"),
        // 2027: 28 March and 31 October.
        (at(2027, 3, 28, 1, 0), "2027-03-28 02:00"),
        (at(2027, 10, 31, 0, 30), "2027-10-31 01:30"),
        (at(2027, 10, 31, 1, 30), "2027-10-31 01:30"),
        (at(2026, 12, 31, 23, 30), "2026-12-31 23:30"),
    ];
    for (utc, local) in cases {
        assert_eq!(
            uk_local(utc).format("%Y-%m-%d %H:%M").to_string(),
            local,
            "{utc}"
        );
    }
    // 06:30 UTC in July is 07:30 BST: inside GP hours; in January it is 06:30: outside.
    let gp = WorkingHours::parse("Mon-Fri 07:00-19:00").expect("hours");
    assert!(gp.contains(uk_local(at(2026, 7, 1, 6, 30))));
    assert!(!gp.contains(uk_local(at(2026, 1, 14, 6, 30))));
}

#[test]
fn working_hours_parse_and_say_what_is_wrong() {
    let h = WorkingHours::parse("Mon,Wed-Fri 08:30-24:00").expect("valid");
    let d = |day: u32, hh: u32, mm: u32| {
        NaiveDate::from_ymd_opt(2026, 3, day)
            .and_then(|d| d.and_hms_opt(hh, mm, 0))
            .expect("date")
    };
    assert!(h.contains(d(2, 8, 30)), "Monday 08:30");
    assert!(!h.contains(d(2, 8, 29)), "Monday 08:29");
    assert!(h.contains(d(4, 23, 59)), "Wednesday 23:59");
    assert!(!h.contains(d(3, 12, 0)), "Tuesday");
    for (bad, says) in [
        ("Mon-Fri", "separated by a space"),
        ("Mon-Fry 07:00-19:00", "days are"),
        ("Fri-Mon 07:00-19:00", "towards Sunday"),
        ("Mon-Fri 7-19", "HH:MM"),
        ("Mon-Fri 19:00-07:00", "open before"),
        ("Mon-Fri 07:00-24:01", "HH:MM"),
    ] {
        let e = WorkingHours::parse(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn configuration_is_checked() {
    assert!(WatchConfig::default().validate().is_ok());
    let mut c = WatchConfig::default();
    c.hours.insert(
        OrgKind::AcuteTrust,
        WorkingHours::parse("Mon-Fri 07:00-19:00").expect("hours"),
    );
    assert!(c.validate().expect_err("exempt").contains("emergency"));
    let c = WatchConfig {
        refuse_patients: 10,
        flag_patients: 20,
        ..WatchConfig::default()
    };
    assert!(c.validate().is_err());
    assert_eq!(family_of("Dr Asha Patel"), "PATEL");
    assert_eq!(family_of("Siobhan O'Murphy"), "OMURPHY");
    assert_eq!(family_of(""), "");
}

#[tokio::test]
async fn one_flag_per_user_rule_and_window_with_the_rest_counted() {
    let cfg = WatchConfig {
        flag_patients: 2,
        refuse_patients: 4,
        ..WatchConfig::default()
    };
    let w = Watch::new(cfg);
    let t0 = at(2026, 3, 3, 10, 0);
    let mut flagged = Vec::new();
    let mut refused = Vec::new();
    for i in 0..7 {
        let patient = format!("p{i}");
        let c = w
            .check(Seen {
                user_id: "u1",
                patient: &patient,
                facts: facts(t0 + Duration::minutes(i), OrgKind::GpPractice),
            })
            .await
            .expect("memory");
        refused.push(c.refused.is_some());
        flagged.extend(c.flags.iter().map(|(f, n)| (i, f.rule.code(), *n)));
    }
    // p0..p3 allowed (4 is the hard limit), p4..p6 refused.
    assert_eq!(
        refused,
        [false, false, false, false, true, true, true],
        "refused above the hard limit"
    );
    // The third patient is the first above 2: one many-patients flag; the first refusal
    // is flagged, the next two are not.
    assert_eq!(
        flagged,
        [(2, "many-patients", 0), (4, "too-many-patients", 0)]
    );
    // A patient already counted can still be viewed.
    let again = w
        .check(Seen {
            user_id: "u1",
            patient: "p1",
            facts: facts(t0 + Duration::minutes(8), OrgKind::GpPractice),
        })
        .await
        .expect("memory");
    assert!(again.refused.is_none());
    // An hour after the first flag, the next flag says how many were held back.
    let later = w
        .check(Seen {
            user_id: "u1",
            patient: "p9",
            facts: facts(t0 + Duration::minutes(64), OrgKind::GpPractice),
        })
        .await
        .expect("memory");
    assert!(later.refused.is_none(), "the window has moved on");
    let late = w
        .check(Seen {
            user_id: "u1",
            patient: "p10",
            facts: facts(t0 + Duration::minutes(65), OrgKind::GpPractice),
        })
        .await
        .expect("memory");
    let late = w
        .check(Seen {
            user_id: "u1",
            patient: "p11",
            facts: facts(t0 + Duration::minutes(66), OrgKind::GpPractice),
        })
        .await
        .expect("memory")
        .flags
        .into_iter()
        .chain(late.flags)
        .map(|(f, n)| (f.rule.code(), n))
        .collect::<Vec<_>>();
    assert!(late.contains(&("many-patients", 2)), "{late:?}");
    // Another user is counted apart.
    let other = w
        .check(Seen {
            user_id: "u2",
            patient: "p0",
            facts: facts(t0, OrgKind::GpPractice),
        })
        .await
        .expect("memory");
    assert!(other.flags.is_empty() && other.refused.is_none());
}
