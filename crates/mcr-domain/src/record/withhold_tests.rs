use super::*;
use serde_json::json;

fn item(org: &str, org_name: &str, resource: serde_json::Value) -> RecordItem {
    RecordItem {
        section: Section::Problems,
        class: DataClass::Problems,
        resource_type: "Condition".into(),
        code: None,
        display: "Asthma".into(),
        detail: None,
        status: None,
        date: None,
        sources: vec![ItemSource {
            source: SourceId::parse("gp").expect("id"),
            org_code: OdsCode::parse(org).expect("ods"),
            org_name: org_name.into(),
            full_url: "https://gp.example/fhir/Condition/1".into(),
            recorded: None,
        }],
        discrepancy: None,
        resource: SourceJson::from_value(&resource),
    }
}

#[test]
fn a_restricted_patients_practice_is_named_nowhere_in_the_record() {
    let practice = "E82012";
    let named = json!({"resourceType": "MedicationStatement", "id": "m1",
        "informationSource": {"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": practice}, "display": "Bridge Street Surgery"},
        "contained": [{"resourceType": "Organization", "id": "o1", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": practice}], "name": "Bridge Street Surgery"}]});
    // Named only in words (R4 allows no Organization as an asserter): found by name.
    let in_words = json!({"resourceType": "Condition", "id": "c1",
        "asserter": {"type": "PractitionerRole", "display": "Clinician, Bridge Street Surgery"}});
    let elsewhere = json!({"resourceType": "Condition", "id": "c2",
        "asserter": {"type": "PractitionerRole", "display": "Clinician, Lister Hospital"}});
    let mut record = MergedRecord {
        nhs_number: NhsNumber::parse("9434765919").expect("nhs"),
        patient: Some(json!({"resourceType": "Patient", "id": "p1",
            "managingOrganization": {"identifier": {"value": practice}, "display": "Bridge Street Surgery"}})),
        patient_url: None,
        sections: vec![(
            Section::Problems,
            vec![
                item("E82000", "Hertfordshire GP Practices", named),
                item("E82000", "Hertfordshire GP Practices", in_words),
                item(
                    "RWH",
                    "East and North Hertfordshire NHS Trust",
                    elsewhere.clone(),
                ),
            ],
        )],
        sources: Vec::new(),
        unavailable_sections: Vec::new(),
        withheld: false,
        demographics_differ: Vec::new(),
        location_withheld: true,
    };
    let practices = ["E82000", practice]
        .into_iter()
        .map(|c| OdsCode::parse(c).expect("ods"))
        .collect();
    assert_eq!(record.withhold_practice_names(&practices), 2);
    let text = serde_json::to_string(&record).expect("json");
    for gone in [
        practice,
        "Bridge Street Surgery",
        "Hertfordshire GP Practices",
    ] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    let items = record.items(Section::Problems);
    let first = items[0].resource.value().expect("json");
    assert_eq!(
        first["informationSource"],
        json!({"type": "Organization", "display": PRACTICE_WITHHELD})
    );
    assert_eq!(first["contained"][0]["name"], PRACTICE_WITHHELD);
    assert_eq!(
        items[1].resource.value().expect("json")["asserter"]["display"],
        format!("Clinician, {PRACTICE_WITHHELD}")
    );
    // Another organisation's item is as its source sent it.
    assert_eq!(items[2].resource.value(), Some(elsewhere));
    assert_eq!(
        items[2].sources[0].org_name,
        "East and North Hertfordshire NHS Trust"
    );
    // The source code of the trust stays: only practices are withheld.
    assert!(text.contains("RWH"));
}
