use super::*;
use std::collections::HashSet;

#[test]
fn every_word_reads_back_as_itself_and_no_two_share_a_string() {
    let mut seen = HashSet::new();
    for a in Action::all() {
        assert!(seen.insert(a.as_str()), "{} twice", a.as_str());
        assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        let json = serde_json::to_string(&a).expect("encodes");
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<Action>(&json).expect("decodes"), a);
    }
    for o in Outcome::ALL {
        assert_eq!(o.as_str().parse::<Outcome>(), Ok(*o));
    }
}

#[test]
fn the_words_stored_today_are_kept() {
    // The hash chain covers these strings: they can never change.
    for (a, word) in [
        (Action::ViewRecord, "view-record"),
        (Action::WithdrawObjection, "withdraw-objection"),
        (
            Action::RecordPermissionOnBehalf,
            "record-permission-on-behalf",
        ),
        (
            Action::Authenticate(AuthChannel::PatientSignIn),
            "authenticate:patient-sign-in",
        ),
        (
            Action::Refused(RefusalKind::InvalidNhsNumber),
            "refused:invalid-nhs-number",
        ),
    ] {
        assert_eq!(a.as_str(), word);
    }
    assert_eq!(
        Outcome::ReferredForInvestigation.as_str(),
        "referred-for-investigation"
    );
    assert_eq!(Outcome::PermissionGiven.as_str(), "permission-given");
}

#[test]
fn an_unknown_word_is_an_error_not_a_guess() {
    for bad in [
        "read-patient",
        "authenticate",
        "authenticate:carrier-pigeon",
        "refused:",
        "",
        "View-Record",
    ] {
        let e = bad.parse::<Action>().expect_err(bad);
        assert_eq!(e.kind, "action");
        assert_eq!(e.word, bad);
    }
    assert!(serde_json::from_str::<Action>("\"read-patient\"").is_err());
    assert!("maybe".parse::<Outcome>().is_err());
}

#[test]
fn codings_follow_balp() {
    let view = Action::ViewRecord.coding();
    assert_eq!(
        (
            view.event_type.code,
            view.subtype.map(|s| s.code),
            view.action.code()
        ),
        ("rest", Some("operation"), "E")
    );
    let doc = Action::OpenDocument.coding();
    assert_eq!(
        (doc.subtype.map(|s| s.code), doc.action.code()),
        (Some("read"), "R")
    );
    assert_eq!(Action::UnprotectPerson.coding().action, EventAction::Delete);
    assert_eq!(
        Action::WithdrawObjection.coding().action,
        EventAction::Update
    );
    let token = Action::IssueSystemToken.coding();
    assert_eq!(
        (token.event_type.code, token.subtype.map(|s| s.code)),
        ("110114", Some("ITI-71"))
    );
    let merge = Action::MergePatients.coding();
    assert_eq!(
        (merge.subtype.map(|s| s.code), merge.action.code()),
        (Some("operation"), "U")
    );
    assert_eq!(Action::UnmergePatients.coding(), merge);
    assert_eq!(
        Action::ReadMerges.coding().subtype.map(|s| s.code),
        Some("search-type")
    );
    // A person's decisions about a local identity: the same coding as about an index
    // patient (a decision created), and an unlink deletes a link.
    assert_eq!(Action::LocalMatchLink.coding(), Action::MatchLink.coding());
    assert_eq!(
        Action::LocalMatchNotAMatch.coding(),
        Action::MatchNotAMatch.coding()
    );
    let unlink = Action::LocalMatchUnlink.coding();
    assert_eq!(
        (unlink.subtype.map(|s| s.code), unlink.action.code()),
        (Some("delete"), "D")
    );
    assert_eq!(
        Action::ReadLocalIdentity.coding().subtype.map(|s| s.code),
        Some("read")
    );
    assert_eq!(Outcome::Permit.code(), "0");
    assert_eq!(Outcome::NeedsPermission.code(), "4");
    assert_eq!(Outcome::Error.code(), "8");
}
