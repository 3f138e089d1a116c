//! Grants for tests, made the only way grants are made: by the policy's decision.

use mcr_domain::{DataClass, NhsNumber, OdsCode, OrgKind, Organisation, Principal, Purpose, Role};
use mcr_policy::{
    DecisionRequest, Grant, PermissionDecision, PermissionGiver, PermissionRecord, PolicyConfig,
    Relationship, RelationshipKind,
};

/// A grant to view `nhs` with exactly `classes`, and the policy that made it: a clinician at
/// the GP practice the patient is registered with, with the patient's permission, under a
/// policy whose clinicians see `classes` (change the policy's other settings, such as the
/// sensitivity rules or encounter windows, before asking the grant for its filter).
pub fn grant(nhs: &NhsNumber, classes: &[DataClass]) -> (Grant, PolicyConfig) {
    let mut policy = PolicyConfig::default();
    policy
        .roles
        .insert(Role::Clinician, classes.iter().copied().collect());
    let practice = Organisation {
        code: OdsCode::parse("A20047").expect("ods"),
        name: "Riverside Surgery".into(),
        kind: OrgKind::GpPractice,
        member: true,
        suspended: false,
    };
    let principal = Principal {
        user_id: "gp.patel".into(),
        name: "Dr Asha Patel".into(),
        role: Role::Clinician,
        organisation: practice.clone(),
        role_profile: None,
    };
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
    let relationships = [Relationship {
        org_code: practice.code.clone(),
        kind: RelationshipKind::GpRegistration,
        derived: true,
        start: now - chrono::Duration::days(365),
        end: None,
        user_id: None,
    }];
    let permissions = [PermissionRecord {
        org_code: practice.code.clone(),
        user_id: principal.user_id.clone(),
        decision: PermissionDecision::Given,
        given_by: PermissionGiver::Patient,
        at: now,
    }];
    let request = DecisionRequest {
        principal: &principal,
        patient: nhs,
        purpose: Purpose::DirectCare,
        now,
        relationships: &relationships,
        permissions: &permissions,
        objection: None,
        emergency: None,
        restricted: false,
    };
    let decision = mcr_policy::decide(&request, &policy);
    let grant = decision
        .into_grant()
        .expect("a GP with permission views their registered patient");
    (grant, policy)
}
