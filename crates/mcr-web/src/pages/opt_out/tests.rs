use super::*;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default()
}

fn filled() -> OptOutForm {
    OptOutForm {
        given: "Ann".into(),
        family: "Smith".into(),
        dob_day: "2".into(),
        dob_month: "3".into(),
        dob_year: "1970".into(),
        nhs: String::new(),
        postcode: "al1 3er".into(),
        contact: "ann@example.org".into(),
        kind: String::new(),
    }
}

#[test]
fn postcodes_are_checked_for_shape() {
    for ok in ["AL1 3ER", "al13er", "SW1A 1AA", "M1 1AE", "CR2 6XH"] {
        assert!(looks_like_postcode(ok), "{ok}");
    }
    for bad in [
        "", "12345", "AL1", "AL1 3E", "ALL 3ER", "AL1 33R", "<script>",
    ] {
        assert!(!looks_like_postcode(bad), "{bad}");
    }
}

#[test]
fn a_complete_form_becomes_a_submission() {
    let sub = to_submission(&filled(), today()).expect("valid");
    assert_eq!(sub.postcode, "AL1 3ER");
    assert_eq!(sub.nhs_number, None);
    let with_nhs = OptOutForm {
        nhs: "943 476 5919".into(),
        ..filled()
    };
    assert_eq!(
        to_submission(&with_nhs, today())
            .expect("valid")
            .nhs_number
            .map(|n| n.to_string())
            .as_deref(),
        Some("9434765919")
    );
}

#[test]
fn each_missing_or_wrong_field_names_itself() {
    let empty = to_submission(&OptOutForm::default(), today()).expect_err("empty");
    for field in ["given", "family", "dob-day", "postcode", "contact"] {
        assert!(empty.has(field), "{field}: {empty:?}");
    }
    assert!(!empty.has("nhs"), "the NHS number is optional");
    let bad_nhs = to_submission(
        &OptOutForm {
            nhs: "9434765918".into(),
            ..filled()
        },
        today(),
    )
    .expect_err("check digit");
    assert!(bad_nhs.has("nhs"));
    let long = to_submission(
        &OptOutForm {
            family: "x".repeat(MAX_TEXT + 1),
            ..filled()
        },
        today(),
    )
    .expect_err("long");
    assert!(long.has("family"));
    let future = to_submission(
        &OptOutForm {
            dob_year: "2030".into(),
            ..filled()
        },
        today(),
    )
    .expect_err("future");
    assert_eq!(
        future.get("dob-day"),
        Some("Date of birth must be in the past")
    );
}
