//! Focused tests of single rules: boundaries, ordering, and the words.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mcr_domain::{DataClass, NhsNumber, OdsCode, OrgKind, Organisation, Principal, Purpose, Role};
use mcr_policy::{
    decide, explain, Basis, ConsentModel, Decision, DecisionRequest, DenyCode, EmergencyAccess,
    EmergencyReason, ObjectionState, OverrideReason, PermissionDecision, PermissionGiver,
    PermissionRecord, PolicyConfig, Relationship, RelationshipKind, Rule,
};

const USER: &str = "dr-a";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0)
        .single()
        .expect("valid time")
}

fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).expect("valid ODS code")
}

fn principal(role: Role, kind: OrgKind) -> Principal {
    Principal {
        role_profile: None,
        user_id: USER.into(),
        name: "Dr A".into(),
        role,
        organisation: Organisation {
            code: ods("RWH"),
            name: "Lister Hospital".into(),
            kind,
            member: true,
            suspended: false,
        },
    }
}

fn gp_reg(org: &str) -> Relationship {
    Relationship {
        org_code: ods(org),
        kind: RelationshipKind::GpRegistration,
        derived: true,
        start: t0() - Duration::days(365),
        end: None,
        user_id: None,
    }
}

fn perm(user: &str, decision: PermissionDecision, at: DateTime<Utc>) -> PermissionRecord {
    PermissionRecord {
        org_code: ods("RWH"),
        user_id: user.into(),
        decision,
        given_by: PermissionGiver::Patient,
        at,
    }
}

/// Everything a request borrows, owned in one place.
struct Case {
    principal: Principal,
    patient: NhsNumber,
    now: DateTime<Utc>,
    relationships: Vec<Relationship>,
    permissions: Vec<PermissionRecord>,
    objection: Option<ObjectionState>,
    emergency: Option<EmergencyAccess>,
    restricted: bool,
    cfg: PolicyConfig,
}

impl Case {
    fn new(role: Role) -> Self {
        Case {
            principal: principal(role, OrgKind::AcuteTrust),
            patient: NhsNumber::parse("9434765919").expect("valid"),
            now: t0(),
            relationships: vec![gp_reg("RWH")],
            permissions: vec![],
            objection: None,
            emergency: None,
            restricted: false,
            cfg: PolicyConfig::default(),
        }
    }
    fn req(&self) -> DecisionRequest<'_> {
        DecisionRequest {
            principal: &self.principal,
            patient: &self.patient,
            purpose: Purpose::DirectCare,
            now: self.now,
            relationships: &self.relationships,
            permissions: &self.permissions,
            objection: self.objection.as_ref(),
            emergency: self.emergency.as_ref(),
            restricted: self.restricted,
        }
    }
    fn explain(&self) -> mcr_policy::Explanation {
        explain(&self.req(), &self.cfg)
    }
    fn decide(&self) -> Decision {
        let d = decide(&self.req(), &self.cfg);
        assert_eq!(explain(&self.req(), &self.cfg).decision, d);
        d
    }
}

fn deny_code(d: &Decision) -> Option<DenyCode> {
    match d {
        Decision::Deny(x) => Some(x.code),
        _ => None,
    }
}

#[test]
fn episode_lasts_exactly_the_configured_hours() {
    let mut c = Case::new(Role::Clinician);
    c.permissions = vec![perm("nurse-b", PermissionDecision::Given, t0())];
    // Another user at the same organisation recorded it: ask-once-record is per organisation.
    c.now = t0() + Duration::hours(24) - Duration::seconds(1);
    let g = c
        .decide()
        .into_grant()
        .expect("permit just before the episode ends");
    assert_eq!(g.expires_at(), Some(t0() + Duration::hours(24)));
    assert!(g.is_valid_at(c.now));
    assert!(!g.is_valid_at(t0() + Duration::hours(24)));
    c.now = t0() + Duration::hours(24);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    // A permission recorded in the future (clock skew) does not count.
    c.now = t0() - Duration::seconds(1);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    // A shorter configured episode.
    c.cfg.permission_episode_hours = 8;
    c.now = t0() + Duration::hours(8);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
}

#[test]
fn ask_every_view_counts_only_this_users_answer_in_the_window() {
    let mut c = Case::new(Role::Nurse);
    c.cfg.consent_model = ConsentModel::AskEveryView;
    c.permissions = vec![perm("someone-else", PermissionDecision::Given, t0())];
    c.now = t0() + Duration::minutes(1);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    c.permissions
        .push(perm(USER, PermissionDecision::Given, t0()));
    let g = c.decide().into_grant().expect("own fresh answer");
    assert_eq!(g.expires_at(), Some(t0() + Duration::minutes(10)));
    c.now = t0() + Duration::minutes(10);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    // An old refusal outside the window does not block: the user asks again anyway.
    c.permissions = vec![perm(USER, PermissionDecision::Refused, t0())];
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    c.now = t0() + Duration::minutes(5);
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::PermissionRefused));
}

#[test]
fn latest_answer_wins_whatever_the_order_and_refusal_wins_a_tie() {
    let mut c = Case::new(Role::Clinician);
    c.now = t0() + Duration::hours(3);
    let refused = perm("x", PermissionDecision::Refused, t0());
    let given = perm("y", PermissionDecision::Given, t0() + Duration::hours(1));
    c.permissions = vec![given.clone(), refused.clone()];
    assert!(
        matches!(c.decide(), Decision::Permit(_)),
        "refused then given: permit"
    );
    c.permissions = vec![refused.clone(), given.clone()];
    assert!(
        matches!(c.decide(), Decision::Permit(_)),
        "order in the slice does not matter"
    );

    let later_refusal = perm("x", PermissionDecision::Refused, t0() + Duration::hours(2));
    c.permissions = vec![given.clone(), later_refusal];
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::PermissionRefused),
        "given then refused: deny"
    );

    let tie = perm("x", PermissionDecision::Refused, given.at);
    c.permissions = vec![given.clone(), tie];
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::PermissionRefused),
        "a tie is a refusal"
    );

    // A refusal blocks for the episode only; after it, the patient is asked again.
    c.permissions = vec![refused.clone()];
    c.now = t0() + Duration::days(200);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));

    // A refusal at another organisation does not block this one.
    let mut elsewhere = refused;
    elsewhere.org_code = ods("E82001");
    c.permissions = vec![
        elsewhere,
        perm("y", PermissionDecision::Given, c.now - Duration::hours(1)),
    ];
    assert!(matches!(c.decide(), Decision::Permit(_)));
}

#[test]
fn emergency_access_runs_out_and_belongs_to_its_user() {
    let mut c = Case::new(Role::Paramedic);
    c.relationships.clear();
    c.emergency = Some(EmergencyAccess {
        user_id: USER.into(),
        reason: EmergencyReason::Unconscious,
        started_at: t0(),
    });
    c.now = t0() + Duration::minutes(239);
    let g = c.decide().into_grant().expect("in force");
    assert_eq!(g.expires_at(), Some(t0() + Duration::minutes(240)));
    assert!(matches!(
        g.basis(),
        Basis::Emergency {
            passed_opt_out: false,
            reason: EmergencyReason::Unconscious,
            ..
        }
    ));
    assert_eq!(g.data_classes().len(), DataClass::ALL.len());

    c.now = t0() + Duration::minutes(240);
    assert!(
        matches!(c.decide(), Decision::NeedsRelationship { .. }),
        "expired emergency is ignored"
    );
    let steps = explain(&c.req(), &c.cfg).steps;
    assert!(steps
        .iter()
        .any(|s| s.rule == Rule::Emergency && s.sentence.contains("ignored")));

    c.now = t0() - Duration::minutes(1);
    assert!(
        matches!(c.decide(), Decision::NeedsRelationship { .. }),
        "not yet started"
    );

    c.now = t0() + Duration::minutes(1);
    c.emergency = Some(EmergencyAccess {
        user_id: "someone-else".into(),
        reason: EmergencyReason::Unconscious,
        started_at: t0(),
    });
    assert!(
        matches!(c.decide(), Decision::NeedsRelationship { .. }),
        "another user's emergency"
    );

    // Expired emergency for a non-clinical role is ignored, not denied.
    let mut a = Case::new(Role::Admin);
    a.emergency = Some(EmergencyAccess {
        user_id: USER.into(),
        reason: EmergencyReason::Unconscious,
        started_at: t0(),
    });
    a.now = t0() + Duration::minutes(5);
    assert_eq!(
        deny_code(&a.decide()),
        Some(DenyCode::EmergencyNotAllowedForRole)
    );
    a.now = t0() + Duration::hours(5);
    assert!(matches!(a.decide(), Decision::NeedsPermission { .. }));
}

#[test]
fn emergency_passes_opt_out_only_when_configured_and_only_for_clinical_roles() {
    let mut c = Case::new(Role::Clinician);
    c.objection = Some(ObjectionState::Active {
        recorded_at: t0() - Duration::days(10),
    });
    c.emergency = Some(EmergencyAccess {
        user_id: USER.into(),
        reason: EmergencyReason::LifeThreatening,
        started_at: t0(),
    });
    c.now = t0() + Duration::minutes(1);
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::OptedOut),
        "default: it does not"
    );
    c.cfg.emergency_passes_opt_out = true;
    let g = c.decide().into_grant().expect("configured to pass");
    assert!(matches!(
        g.basis(),
        Basis::Emergency {
            passed_opt_out: true,
            ..
        }
    ));
    assert!(g.basis().describe().contains("opt-out"));
    c.principal.role = Role::Pharmacist;
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::OptedOut),
        "a non-clinical role never passes it"
    );
    c.principal.role = Role::Nurse;
    c.emergency = None;
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::OptedOut),
        "no emergency, no pass"
    );
}

#[test]
fn organisation_rules_come_first() {
    let mut c = Case::new(Role::Clinician);
    c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    assert!(matches!(c.decide(), Decision::Permit(_)));
    c.principal.organisation.suspended = true;
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::OrgSuspended));
    c.principal.organisation.member = false;
    assert_eq!(
        deny_code(&c.decide()),
        Some(DenyCode::OrgNotMember),
        "membership is checked before suspension"
    );
    c.principal.organisation.member = true;
    c.principal.organisation.suspended = false;
    // Excluded kinds: denied even with everything else recorded, including emergency access.
    for kind in [OrgKind::PrivateCompany, OrgKind::ThirdParty] {
        c.principal.organisation.kind = kind;
        c.emergency = Some(EmergencyAccess {
            user_id: USER.into(),
            reason: EmergencyReason::Unconscious,
            started_at: t0(),
        });
        assert_eq!(deny_code(&c.decide()), Some(DenyCode::OrgKindExcluded));
    }
}

#[test]
fn overrides_count_only_from_designated_roles() {
    let mut c = Case::new(Role::Clinician);
    c.objection = Some(ObjectionState::Overridden {
        reason: OverrideReason::LegalObligation,
        by_role: Role::Admin,
        at: t0(),
        until: t0() + Duration::hours(72),
    });
    c.now = t0() + Duration::hours(1);
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::OptedOut));
    c.objection = Some(ObjectionState::Overridden {
        reason: OverrideReason::LegalObligation,
        by_role: Role::PrivacyOfficer,
        at: t0(),
        until: t0() + Duration::hours(72),
    });
    let g = c.decide().into_grant().expect("designated override");
    // The grant ends when the override does.
    assert_eq!(g.expires_at(), Some(t0() + Duration::hours(72)));
    assert!(matches!(
        g.basis(),
        Basis::ObjectionOverridden {
            relationship: RelationshipKind::GpRegistration,
            ..
        }
    ));
    // Still needs a relationship.
    c.relationships.clear();
    assert!(matches!(c.decide(), Decision::NeedsRelationship { .. }));
    // A withdrawn objection is no objection.
    c.relationships = vec![gp_reg("RWH")];
    c.objection = Some(ObjectionState::Withdrawn { at: t0() });
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
}

#[test]
fn an_override_runs_out_and_the_objection_applies_again() {
    let mut c = Case::new(Role::Clinician);
    c.objection = Some(ObjectionState::Overridden {
        reason: OverrideReason::Safeguarding,
        by_role: Role::CaldicottGuardian,
        at: t0(),
        until: t0() + Duration::hours(72),
    });
    c.now = t0() + Duration::hours(72) - Duration::seconds(1);
    assert!(c.decide().grant().is_some(), "in force just before it ends");
    c.now = t0() + Duration::hours(72);
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::OptedOut));
    let x = c.explain();
    let step = x.steps.last().expect("a step");
    assert_eq!(step.rule, Rule::Objection);
    assert!(
        step.sentence.contains("ended on 4 March 2025 at 09:00 UTC"),
        "{}",
        step.sentence
    );
    // Not yet in force.
    c.now = t0() - Duration::hours(1);
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::OptedOut));
    assert!(c
        .explain()
        .steps
        .last()
        .expect("a step")
        .sentence
        .contains("not yet in force"));
}

#[test]
fn a_refusal_blocks_for_the_episode_and_says_so_then_lapses() {
    let mut c = Case::new(Role::Clinician);
    c.permissions = vec![perm("dr-b", PermissionDecision::Refused, t0())];
    c.now = t0() + Duration::hours(2);
    let d = c.decide();
    assert_eq!(deny_code(&d), Some(DenyCode::PermissionRefused));
    let words = d.sentence();
    assert!(words.contains("The patient said no"), "{words}");
    assert!(
        words.contains("during this episode of care (until 2 March 2025 at 09:00 UTC)"),
        "{words}"
    );
    // A newer yes replaces it.
    c.permissions.push(perm(
        "dr-b",
        PermissionDecision::Given,
        t0() + Duration::hours(1),
    ));
    assert!(c.decide().grant().is_some());
    // Once the episode is over, the refusal lapses: ask again.
    c.permissions = vec![perm("dr-b", PermissionDecision::Refused, t0())];
    c.now = t0() + Duration::hours(25);
    let d = c.decide();
    assert!(matches!(d, Decision::NeedsPermission { .. }), "{d:?}");
    assert!(d.sentence().contains("has lapsed"), "{}", d.sentence());
}

#[test]
fn relationships_must_be_current_at_the_users_organisation() {
    let mut c = Case::new(Role::SocialCarePractitioner);
    c.cfg.consent_model = ConsentModel::LegalBasis;
    c.now = t0();
    let rel =
        |kind, start: DateTime<Utc>, end: Option<DateTime<Utc>>, user: Option<&str>| Relationship {
            org_code: ods("RWH"),
            kind,
            derived: false,
            start,
            end,
            user_id: user.map(str::to_owned),
        };
    let cases = [
        (
            rel(
                RelationshipKind::Recorded,
                t0() - Duration::days(1),
                Some(t0() + Duration::days(1)),
                None,
            ),
            true,
        ),
        (
            rel(
                RelationshipKind::Recorded,
                t0() - Duration::days(2),
                Some(t0()),
                None,
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::Recorded,
                t0() + Duration::days(1),
                None,
                None,
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::Recorded,
                t0() - Duration::days(1),
                Some(t0() - Duration::days(2)),
                None,
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::SelfClaimed,
                t0() - Duration::hours(1),
                None,
                Some(USER),
            ),
            true,
        ),
        (
            rel(
                RelationshipKind::SelfClaimed,
                t0() - Duration::hours(1),
                None,
                Some("colleague"),
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::SelfClaimed,
                t0() - Duration::hours(1),
                None,
                None,
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::RecentEncounter,
                t0() - Duration::days(100),
                Some(t0() - Duration::days(89)),
                None,
            ),
            true,
        ),
        (
            rel(
                RelationshipKind::RecentEncounter,
                t0() - Duration::days(100),
                Some(t0() - Duration::days(90)),
                None,
            ),
            false,
        ),
        (
            rel(
                RelationshipKind::RecentEncounter,
                t0() - Duration::days(10),
                None,
                None,
            ),
            true,
        ),
    ];
    for (i, (r, counts)) in cases.into_iter().enumerate() {
        c.relationships = vec![r];
        let permitted = matches!(c.decide(), Decision::Permit(_));
        assert_eq!(permitted, counts, "case {i}");
    }
    // Another organisation's relationship never counts.
    c.relationships = vec![gp_reg("E82001")];
    assert!(matches!(c.decide(), Decision::NeedsRelationship { .. }));
}

#[test]
fn grant_expires_with_its_relationship_and_legal_basis_does_not_expire() {
    let mut c = Case::new(Role::Clinician);
    c.relationships = vec![Relationship {
        org_code: ods("RWH"),
        kind: RelationshipKind::OpenEncounter,
        derived: true,
        start: t0() - Duration::hours(2),
        end: Some(t0() + Duration::hours(3)),
        user_id: None,
    }];
    c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    let g = c.decide().into_grant().unwrap();
    assert_eq!(g.expires_at(), Some(t0() + Duration::hours(3)));
    c.cfg.consent_model = ConsentModel::LegalBasis;
    c.relationships = vec![gp_reg("RWH")];
    let g = c.decide().into_grant().unwrap();
    assert_eq!(g.expires_at(), None);
    assert_eq!(g.basis().code(), "legal-basis");
}

#[test]
fn admin_gets_demographics_and_care_team_under_the_same_rules() {
    let mut c = Case::new(Role::Admin);
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    let g = c.decide().into_grant().unwrap();
    assert!(g.allows(DataClass::Demographics) && g.allows(DataClass::CareTeam));
    assert!(!g.allows(DataClass::Medications));
    assert_eq!(g.data_classes().len(), 2);
}

#[test]
fn every_deny_code_has_a_sentence_and_a_stable_code() {
    for code in DenyCode::ALL {
        let s = code.sentence();
        assert!(s.len() > 40 && s.ends_with('.'), "{code}: {s}");
        assert!(!s.contains('{'), "{code}: unformatted sentence");
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
    }
    assert!(DenyCode::OptedOut.sentence().contains("GP practice"));
    assert!(DenyCode::PermissionRefused
        .sentence()
        .contains("ask them again"));
    // The decisions carry those sentences.
    let c = Case::new(Role::PrivacyOfficer);
    match c.decide() {
        Decision::Deny(d) => assert_eq!(d.sentence, DenyCode::RoleNoClinicalAccess.sentence()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn explanation_lists_every_rule_in_order_with_words() {
    let mut c = Case::new(Role::Clinician);
    c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    let e = explain(&c.req(), &c.cfg);
    let rules: Vec<Rule> = e.steps.iter().map(|s| s.rule).collect();
    assert_eq!(
        rules,
        [
            Rule::Purpose,
            Rule::OrganisationKind,
            Rule::Membership,
            Rule::Suspension,
            Rule::RoleClasses,
            Rule::Objection,
            Rule::Relationship,
            Rule::Permission
        ]
    );
    assert!(e.steps.iter().all(|s| s.passed && !s.sentence.is_empty()));
    // A denial ends the list with the failing rule.
    c.objection = Some(ObjectionState::Active { recorded_at: t0() });
    let e = explain(&c.req(), &c.cfg);
    let last = e.steps.last().unwrap();
    assert_eq!((last.rule, last.passed), (Rule::Objection, false));
    assert!(last.sentence.contains("opted out"));
    // Serializes for the API.
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"]["outcome"], "deny");
    assert_eq!(json["decision"]["code"], "opted-out");
}

#[test]
fn config_reads_kebab_case_and_defaults_to_the_2017_model() {
    let d = PolicyConfig::default();
    assert_eq!(d.consent_model, ConsentModel::AskOnceRecord);
    assert_eq!(d.permission_episode_hours, 24);
    assert!(!d.emergency_passes_opt_out);
    assert!(d.classes_for(Role::PrivacyOfficer).is_empty());
    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"consent_model": "legal-basis", "roles": {"admin": ["demographics"], "clinician": ["medications", "allergies"]}, "override_roles": ["privacy-officer", "clinician"]}"#,
    )
    .unwrap();
    assert_eq!(cfg.consent_model, ConsentModel::LegalBasis);
    assert_eq!(cfg.emergency_minutes, 240);
    assert_eq!(cfg.classes_for(Role::Admin).len(), 1);
    assert!(
        cfg.classes_for(Role::Nurse).is_empty(),
        "a role left out of a configured matrix sees nothing"
    );
    assert!(cfg.may_record_override(Role::Clinician));
    for m in ["ask-every-view", "ask-once-record", "legal-basis"] {
        let cfg: PolicyConfig =
            serde_json::from_str(&format!(r#"{{"consent_model": "{m}"}}"#)).unwrap();
        assert_eq!(cfg.consent_model.as_str(), m);
    }
    assert!(serde_json::from_str::<PolicyConfig>(r#"{"consent_model": "ask-never"}"#).is_err());
    assert!(
        serde_json::from_str::<PolicyConfig>(r#"{"consent-model": "legal-basis"}"#).is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn effective_classes_for_a_source_follow_its_sharing_agreement() {
    use mcr_policy::SharingAgreement;
    use std::collections::{BTreeMap, BTreeSet};
    let mut c = Case::new(Role::SocialCarePractitioner);
    c.principal.organisation.kind = OrgKind::LocalAuthoritySocialCare;
    c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    let g = c.decide().into_grant().unwrap();
    assert_eq!(g.effective_classes_for_source(None), *g.data_classes());
    let agreement = SharingAgreement {
        source_org: ods("E82001"),
        shares: BTreeMap::from([(
            OrgKind::LocalAuthoritySocialCare,
            BTreeSet::from([
                DataClass::Alerts,
                DataClass::Medications,
                DataClass::CarePlans,
            ]),
        )]),
    };
    // Medications are shared by the source but not granted to the role.
    assert_eq!(
        g.effective_classes_for_source(Some(&agreement)),
        BTreeSet::from([DataClass::Alerts, DataClass::CarePlans])
    );
}

/// Rules 1 to 5 decide on the caller alone: when they refuse, `refuse_caller` says exactly
/// what the full decision says (whatever the patient's records), so the gateway can answer
/// before reading the index; when they pass it says nothing.
#[test]
fn callers_refused_before_the_patient_is_read() {
    let everything = |c: &mut Case| {
        c.objection = Some(ObjectionState::Active { recorded_at: t0() });
        c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    };
    let mut cases = Vec::new();
    let mut c = Case::new(Role::Clinician);
    c.principal.organisation.kind = OrgKind::PrivateCompany;
    cases.push((c, DenyCode::OrgKindExcluded));
    let mut c = Case::new(Role::Clinician);
    c.principal.organisation.member = false;
    cases.push((c, DenyCode::OrgNotMember));
    let mut c = Case::new(Role::Clinician);
    c.principal.organisation.suspended = true;
    cases.push((c, DenyCode::OrgSuspended));
    cases.push((
        Case::new(Role::PrivacyOfficer),
        DenyCode::RoleNoClinicalAccess,
    ));
    for (mut c, code) in cases {
        let early = mcr_policy::refuse_caller(&c.principal, Purpose::DirectCare, &c.cfg)
            .expect("refused on the caller alone");
        assert_eq!(deny_code(&early.decision), Some(code));
        assert_eq!(
            early,
            explain(&c.req(), &c.cfg),
            "{code}: same as the full decision"
        );
        everything(&mut c);
        assert_eq!(
            early,
            explain(&c.req(), &c.cfg),
            "{code}: whatever is recorded"
        );
        c.relationships.clear();
        c.permissions.clear();
        c.objection = None;
        assert_eq!(
            early,
            explain(&c.req(), &c.cfg),
            "{code}: or nothing at all"
        );
    }
    let c = Case::new(Role::Clinician);
    assert!(mcr_policy::refuse_caller(&c.principal, Purpose::DirectCare, &c.cfg).is_none());
}

#[test]
fn a_restricted_patient_is_viewed_only_by_the_roles_the_region_names() {
    let given = |c: &mut Case| c.permissions = vec![perm(USER, PermissionDecision::Given, t0())];
    // Not restricted: every role with data classes goes on to the usual rules, no step traced.
    for role in [Role::Clinician, Role::Admin, Role::Pharmacist] {
        let mut c = Case::new(role);
        given(&mut c);
        assert!(c.decide().grant().is_some(), "{role}");
        assert!(!c
            .explain()
            .steps
            .iter()
            .any(|s| s.rule == Rule::Restriction));
    }
    // Restricted, default region: doctors, nurses and paramedics only.
    for (role, may) in [
        (Role::Clinician, true),
        (Role::Nurse, true),
        (Role::Paramedic, true),
        (Role::Pharmacist, false),
        (Role::SocialCarePractitioner, false),
        (Role::Admin, false),
    ] {
        let mut c = Case::new(role);
        given(&mut c);
        c.restricted = true;
        let d = c.decide();
        if may {
            assert!(d.grant().is_some(), "{role}: {d:?}");
            let step = c.explain().steps;
            let step = step
                .iter()
                .find(|s| s.rule == Rule::Restriction)
                .expect("a step");
            assert!(step.passed && step.sentence.contains("restricted"));
        } else {
            assert_eq!(deny_code(&d), Some(DenyCode::RestrictedRecord), "{role}");
            // The sentence says who can.
            assert_eq!(
                d.sentence(),
                "This person's record is restricted. In this region only a doctor, nurse or paramedic may view it. In an emergency, a doctor, nurse or paramedic can use emergency access, which the Caldicott guardian reviews. Otherwise please ask your organisation's Caldicott guardian."
            );
        }
    }
    // A named role still needs the care relationship and permission.
    let mut c = Case::new(Role::Clinician);
    c.restricted = true;
    assert!(matches!(c.decide(), Decision::NeedsPermission { .. }));
    c.relationships.clear();
    assert!(matches!(c.decide(), Decision::NeedsRelationship { .. }));

    // The region names whom it likes; naming none leaves emergency access only.
    let mut c = Case::new(Role::Nurse);
    given(&mut c);
    c.restricted = true;
    c.cfg.restricted_roles = [Role::Clinician].into_iter().collect();
    let d = c.decide();
    assert_eq!(deny_code(&d), Some(DenyCode::RestrictedRecord));
    assert!(
        d.sentence().contains("only a doctor may view it"),
        "{}",
        d.sentence()
    );
    c.cfg.restricted_roles.clear();
    assert!(c
        .decide()
        .sentence()
        .contains("no role may view it without emergency access"));
    let mut admin = Case::new(Role::Admin);
    given(&mut admin);
    admin.restricted = true;
    admin.cfg.restricted_roles = [Role::Admin].into_iter().collect();
    assert!(
        admin.decide().grant().is_some(),
        "a region may name admin staff"
    );
}

#[test]
fn emergency_access_passes_a_restriction_for_clinical_roles_only() {
    let emergency = |c: &mut Case| {
        c.emergency = Some(EmergencyAccess {
            user_id: USER.into(),
            reason: EmergencyReason::Unconscious,
            started_at: t0(),
        })
    };
    // A nurse the region does not name, in an emergency: permitted, the step says so.
    let mut c = Case::new(Role::Nurse);
    c.restricted = true;
    c.cfg.restricted_roles = [Role::Clinician].into_iter().collect();
    c.relationships.clear();
    assert_eq!(deny_code(&c.decide()), Some(DenyCode::RestrictedRecord));
    emergency(&mut c);
    let g = c
        .decide()
        .into_grant()
        .expect("emergency passes the restriction");
    assert!(matches!(g.basis(), Basis::Emergency { .. }));
    let steps = c.explain().steps;
    let step = steps
        .iter()
        .find(|s| s.rule == Rule::Restriction)
        .expect("a step");
    assert!(
        step.passed
            && step
                .sentence
                .contains("emergency access passes the restriction")
    );

    // Admin staff in an "emergency": refused for the restriction first.
    let mut a = Case::new(Role::Admin);
    a.restricted = true;
    emergency(&mut a);
    assert_eq!(deny_code(&a.decide()), Some(DenyCode::RestrictedRecord));

    // An opt-out still comes first.
    let mut o = Case::new(Role::Clinician);
    o.restricted = true;
    emergency(&mut o);
    o.objection = Some(ObjectionState::Active {
        recorded_at: t0() - Duration::days(1),
    });
    assert_eq!(deny_code(&o.decide()), Some(DenyCode::OptedOut));
}
