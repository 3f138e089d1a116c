use super::*;

fn good_claims(now: i64) -> Value {
    json!({
        "iss": "https://mcr.example", "sub": "u1", "aud": "https://gp.example",
        "iat": now, "exp": now + 300, "reason_for_request": "directcare",
        "requested_scope": "patient/*.read",
        "requesting_device": {"resourceType": "Device", "identifier": [{"system": "x", "value": "gw"}], "model": "m", "version": "1"},
        "requesting_organization": {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RWH"}]},
        "requesting_practitioner": {"resourceType": "Practitioner", "id": "u1", "identifier": [
            {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "UNK"},
            {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "UNK"}]},
    })
}

#[test]
fn each_claim_rule_of_the_spec_is_checked() {
    let now = 1_800_000_000;
    assert_eq!(check_claims(&good_claims(now), now), Ok(()));
    let broken: [(&str, Value, &str); 8] = [
        (
            "/reason_for_request",
            json!("research"),
            "reason_for_request",
        ),
        (
            "/requested_scope",
            json!("organization/*.read"),
            "requested_scope",
        ),
        ("/exp", json!(now + 3600), "five minutes"),
        (
            "/requesting_device/resourceType",
            json!("Patient"),
            "requesting_device",
        ),
        (
            "/requesting_organization/identifier/0/value",
            json!(""),
            "ODS code",
        ),
        (
            "/requesting_practitioner/id",
            json!("someone-else"),
            "sub claim",
        ),
        (
            "/requesting_practitioner/identifier/1/system",
            json!("x"),
            "sds-role-profile-id",
        ),
        ("/sub", json!(""), "sub claim is missing"),
    ];
    for (path, value, said) in broken {
        let mut c = good_claims(now);
        *c.pointer_mut(path).expect(path) = value;
        let why = check_claims(&c, now).expect_err(path);
        assert!(why.contains(said), "{path}: {why}");
    }
    assert!(check_claims(&good_claims(now - 600), now)
        .expect_err("expired")
        .contains("expired"));
}

#[test]
fn parameters_are_read_or_refused_with_the_specs_codes() {
    let ok = br#"{"resourceType":"Parameters","parameter":[
        {"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},
        {"name":"includeAllergies","part":[{"name":"includeResolvedAllergies","valueBoolean":true}]},
        {"name":"includeMedication"}]}"#;
    let a = read_parameters(ok).expect("reads");
    assert!(a.allergies && a.medication && !a.problems);
    assert_eq!(a.nhs, "9434765919");
    let code = |body: &[u8]| {
        let r = read_parameters(body).expect_err("refused");
        r.status().as_u16()
    };
    assert_eq!(code(b"not json"), 422);
    assert_eq!(code(br#"{"resourceType":"Patient"}"#), 422);
    assert_eq!(
        code(br#"{"resourceType":"Parameters","parameter":[{"name":"includeMedication"}]}"#),
        422
    );
    assert_eq!(
        code(br#"{"resourceType":"Parameters","parameter":[
            {"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},
            {"name":"includeAllergies"}]}"#),
        422
    );
}
