//! The sensitive-data filter and data sharing agreements.

use mcr_domain::{DataClass, OdsCode, OrgKind};
use mcr_policy::{
    withhold, SensitiveCategory, SensitivityConfig, SharingAgreement, WithholdReason, SNOMED,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The filter's answer for `r`, the same whether it reads the parsed `Value` or the gateway's
/// borrowed reading of the text (`mcr_fhir::Doc`, what it uses on resources from sources).
fn withheld(r: &Value, cfg: &SensitivityConfig) -> Option<WithholdReason> {
    let text = r.to_string();
    let doc = mcr_fhir::Doc::parse(&text).expect("JSON");
    let answer = withhold(r, cfg);
    assert_eq!(
        withhold(&doc, cfg),
        answer,
        "the two readings disagree on {r}"
    );
    answer
}

fn cc(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": "http://example.org/other", "code": "x" }, { "system": system, "code": code }] })
}

#[test]
fn each_default_category_is_withheld_wherever_the_code_appears() {
    let cfg = SensitivityConfig::default();
    let examples = [
        ("86406008", SensitiveCategory::Hiv),
        ("165816005", SensitiveCategory::Hiv),
        ("105629000", SensitiveCategory::Sti),
        ("15628003", SensitiveCategory::Sti),
        ("76272004", SensitiveCategory::Sti),
        ("52637005", SensitiveCategory::Ivf),
        ("386639001", SensitiveCategory::Termination),
        ("93461009", SensitiveCategory::GenderReassignment),
        ("407374003", SensitiveCategory::GenderReassignment),
    ];
    for (code, cat) in examples {
        let want = Some(WithholdReason::Sensitive(cat));
        let c = cc(SNOMED, code);
        let shapes = [
            json!({ "resourceType": "Condition", "code": c }),
            json!({ "resourceType": "Observation", "code": cc(SNOMED, "1"), "valueCodeableConcept": c }),
            json!({ "resourceType": "MedicationRequest", "reasonCode": [cc(SNOMED, "2"), c] }),
            json!({ "resourceType": "MedicationStatement", "medicationCodeableConcept": c }),
            json!({ "resourceType": "Encounter", "type": [c] }),
            json!({ "resourceType": "Condition", "category": [c] }),
            json!({ "resourceType": "Procedure", "code": cc(SNOMED, "3"), "contained": [{ "resourceType": "Condition", "code": c }] }),
        ];
        for r in shapes {
            assert_eq!(withheld(&r, &cfg), want, "{code} in {r}");
        }
    }
}

#[test]
fn confidentiality_labels_restricted_and_very_restricted() {
    let cfg = SensitivityConfig::default();
    let labelled = |code: &str| {
        json!({ "resourceType": "DocumentReference", "meta": { "security": [
            { "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code }
        ] } })
    };
    assert_eq!(
        withheld(&labelled("R"), &cfg),
        Some(WithholdReason::ConfidentialLabel)
    );
    assert_eq!(
        withheld(&labelled("V"), &cfg),
        Some(WithholdReason::ConfidentialLabel)
    );
    assert_eq!(withheld(&labelled("N"), &cfg), None);
    assert_eq!(withheld(&labelled("M"), &cfg), None);
    let off = SensitivityConfig {
        withhold_confidential_labels: false,
        ..SensitivityConfig::default()
    };
    assert_eq!(withheld(&labelled("R"), &off), None);
    // Sensitivity policy labels from v3-ActCode.
    let hiv = json!({ "meta": { "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV" }] } });
    assert_eq!(
        withheld(&hiv, &cfg),
        Some(WithholdReason::Sensitive(SensitiveCategory::Hiv))
    );
}

#[test]
fn ordinary_and_malformed_resources_are_not_withheld_and_never_panic() {
    let cfg = SensitivityConfig::default();
    let asthma = json!({ "resourceType": "Condition", "code": cc(SNOMED, "195967001") });
    assert_eq!(withheld(&asthma, &cfg), None);
    // The same code in another system is not the SNOMED concept.
    assert_eq!(
        withhold(
            &json!({ "code": cc("http://read.info/ctv3", "86406008") }),
            &cfg
        ),
        None
    );
    for junk in [
        json!(null),
        json!("Condition"),
        json!([1, 2, 3]),
        json!({ "code": 86406008 }),
        json!({ "code": { "coding": "86406008" } }),
        json!({ "code": { "coding": [{ "system": SNOMED, "code": 86406008 }] } }),
        json!({ "meta": { "security": "R" } }),
        json!({ "contained": { "code": cc(SNOMED, "86406008") } }),
    ] {
        assert_eq!(withheld(&junk, &cfg), None, "{junk}");
    }
}

#[test]
fn sharing_agreements_limit_classes_by_viewer_kind() {
    let a = SharingAgreement {
        source_org: OdsCode::parse("RWH").unwrap(),
        shares: BTreeMap::from([
            (
                OrgKind::GpPractice,
                DataClass::ALL.into_iter().collect::<BTreeSet<_>>(),
            ),
            (
                OrgKind::LocalAuthoritySocialCare,
                BTreeSet::from([DataClass::Alerts, DataClass::CarePlans]),
            ),
            (
                OrgKind::PrivateCompany,
                DataClass::ALL.into_iter().collect(),
            ),
        ]),
    };
    assert!(a.allows(OrgKind::GpPractice, DataClass::Results));
    assert!(a.allows(OrgKind::LocalAuthoritySocialCare, DataClass::Alerts));
    assert!(!a.allows(OrgKind::LocalAuthoritySocialCare, DataClass::Results));
    assert!(
        !a.allows(OrgKind::Hospice, DataClass::Alerts),
        "a kind not listed gets nothing"
    );
    assert!(
        !a.allows(OrgKind::PrivateCompany, DataClass::Alerts),
        "never, even if listed"
    );
    assert!(SharingAgreement::allows_opt(
        None,
        OrgKind::Hospice,
        DataClass::Results
    ));
    assert!(!SharingAgreement::allows_opt(
        None,
        OrgKind::ThirdParty,
        DataClass::Demographics
    ));
    let parsed: SharingAgreement = serde_json::from_value(json!({
        "source_org": "E82001", "shares": { "acute-trust": ["medications", "allergies"] }
    }))
    .unwrap();
    assert!(parsed.allows(OrgKind::AcuteTrust, DataClass::Medications));
}
