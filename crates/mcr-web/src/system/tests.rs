//! The registry's checks at start-up, the scopes a client may be given and the end user claim.

use super::token::end_user;
use super::*;
use serde_json::json;

#[test]
fn allowed_scopes_cover_only_what_they_say() {
    assert!(covers("system/*.rs", "system/*.rs"));
    assert!(covers("system/*.rs", "system/Patient.rs"));
    assert!(covers("system/*.rs", "system/Patient.r"));
    assert!(covers("system/*.read", "system/Observation.rs"));
    assert!(covers("system/*.*", "system/Consent.cu"));
    assert!(
        !covers("system/*.rs", "system/Consent.cu"),
        "writes beyond reads"
    );
    assert!(
        !covers("system/Patient.rs", "system/*.rs"),
        "one type is not all"
    );
    assert!(!covers("system/*.rs", "user/*.rs"), "another context");
    assert!(!covers("system/*.rs", "patient/*.rs"));
    assert!(!covers("system/*.rs", "launch/patient"));
    assert!(!covers("system/*.rs", "system/*.x"));
    assert!(!covers("system/*.rs", "system/../*.rs"));
}

#[test]
fn clients_are_checked_at_start_up() {
    let client =
        |scopes: &[&str], jwks_url: Option<&str>, role: Option<&str>| BackendServicesConfig {
            token_lifetime_seconds: 300,
            clients: vec![SystemClientConfig {
                client_id: "epr".into(),
                name: "EPR".into(),
                organisation: "RWH".into(),
                jwks_url: jwks_url.map(str::to_owned),
                jwks: None,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                unattended_role: role.map(str::to_owned),
            }],
        };
    assert!(SystemAccess::new(&client(
        &["system/*.rs"],
        Some("https://epr.example/jwks"),
        None
    ))
    .is_ok());
    let err = SystemAccess::new(&client(
        &["user/*.rs"],
        Some("https://epr.example/jwks"),
        None,
    ))
    .expect_err("user scope");
    assert!(err.contains("not a SMART system/ scope"), "{err}");
    assert!(SystemAccess::new(&client(&[], Some("https://epr.example/jwks"), None)).is_err());
    assert!(
        SystemAccess::new(&client(&["system/*.rs"], None, None)).is_err(),
        "no keys"
    );
    assert!(
        SystemAccess::new(&client(
            &["system/*.rs"],
            Some("http://epr.example/jwks"),
            None
        ))
        .is_err(),
        "not https"
    );
    assert!(SystemAccess::new(&client(
        &["system/*.rs"],
        Some("https://epr.example/jwks"),
        Some("wizard")
    ))
    .is_err());
}

#[test]
fn smart_v2_scopes_by_context_resource_and_permission() {
    use crate::auth::{scope_grants, scopes_allow, Need, ScopeGrant};
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        scope_grants(&s(&["system/*.rs"]), Need::Read("*")),
        Some(ScopeGrant::AnyPatient)
    );
    assert_eq!(
        scope_grants(&s(&["patient/*.rs"]), Need::Read("*")),
        Some(ScopeGrant::OnePatient),
        "bound to the token's patient"
    );
    assert!(scopes_allow(
        &s(&["system/Patient.rs"]),
        Need::Read("Patient")
    ));
    assert!(scopes_allow(
        &s(&["system/Patient.s"]),
        Need::Read("Patient")
    ));
    assert!(
        !scopes_allow(&s(&["system/Patient.rs"]), Need::Read("*")),
        "one type is not the whole record"
    );
    assert!(!scopes_allow(&s(&["system/*.c"]), Need::Read("Patient")));
    assert!(scopes_allow(
        &s(&["system/Consent.c"]),
        Need::Write("Consent")
    ));
    assert!(!scopes_allow(&s(&["system/*.d"]), Need::Write("Consent")));
    assert!(!scopes_allow(&s(&["system/*.rs"]), Need::Write("Consent")));
    assert!(!scopes_allow(&s(&["system/*.rsx"]), Need::Read("Patient")));
}

#[test]
fn the_end_user_claim_must_be_whole() {
    let ok = json!({"id": "u1", "name": "Dr A", "role": "clinician"});
    assert_eq!(end_user(&ok).map(|u| u.role), Some(Role::Clinician));
    assert!(end_user(&json!({"id": "u1", "name": "Dr A"})).is_none());
    assert!(end_user(&json!({"id": "", "name": "Dr A", "role": "clinician"})).is_none());
    assert!(end_user(&json!({"id": "u1", "name": "Dr A", "role": "overlord"})).is_none());
    assert!(end_user(&json!("u1")).is_none());
}
