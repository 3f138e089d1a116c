use super::*;

fn outcome(http: &str, code: &str, diagnostics: Option<&str>) -> Vec<u8> {
    let mut issue = json!({"severity": "error", "code": http, "details": {"coding": [
        {"system": SPINE_ERROR_SYSTEM, "code": code, "display": "x"}]}});
    if let Some(d) = diagnostics {
        issue["diagnostics"] = json!(d);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
        .to_string()
        .into_bytes()
}

#[test]
fn each_spine_error_code_becomes_its_own_failure() {
    let cases = [
        (
            403,
            "forbidden",
            "NO_PATIENT_CONSENT",
            None,
            FailureReason::PatientDissent,
        ),
        (
            404,
            "not-found",
            "PATIENT_NOT_FOUND",
            None,
            FailureReason::PatientNotFound,
        ),
        (
            404,
            "not-found",
            "PATIENT_NOT_FOUND",
            Some("Patient is not registered at this practice"),
            FailureReason::NotRegistered,
        ),
        (
            400,
            "value",
            "INVALID_NHS_NUMBER",
            None,
            FailureReason::InvalidNhsNumber,
        ),
        (
            422,
            "invalid",
            "INVALID_RESOURCE",
            None,
            FailureReason::InvalidRequest {
                code: "INVALID_RESOURCE".into(),
            },
        ),
        (
            422,
            "invalid",
            "INVALID_PARAMETER",
            None,
            FailureReason::InvalidRequest {
                code: "INVALID_PARAMETER".into(),
            },
        ),
        (
            403,
            "forbidden",
            "ACCESS DENIED",
            None,
            FailureReason::AccessDenied {
                code: "ACCESS DENIED".into(),
            },
        ),
        (
            500,
            "processing",
            "INTERNAL_SERVER_ERROR",
            None,
            FailureReason::ProviderError {
                code: "INTERNAL_SERVER_ERROR".into(),
            },
        ),
    ];
    for (status, kind, code, diagnostics, want) in cases {
        assert_eq!(
            failure_from(status, &outcome(kind, code, diagnostics)),
            want,
            "{code}"
        );
    }
    // No Spine code: the status decides; an unknown code is not repeated.
    assert_eq!(
        failure_from(502, b"<html>proxy</html>"),
        FailureReason::HttpStatus { status: 502 }
    );
    assert_eq!(
        failure_from(403, &outcome("forbidden", "<script>", None)),
        FailureReason::AccessDenied {
            code: "HTTP 403".into()
        }
    );
}

#[test]
fn the_parameters_name_the_patient_and_each_clinical_area_granted() {
    let nhs = NhsNumber::parse("9434765919").expect("nhs");
    let p = parameters(
        &nhs,
        &["Patient", "AllergyIntolerance", "MedicationStatement"],
    );
    let names: Vec<&str> = p["parameter"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["patientNHSNumber", "includeAllergies", "includeMedication"]
    );
    assert_eq!(p["parameter"][0]["valueIdentifier"]["value"], "9434765919");
    assert_eq!(
        p["parameter"][1]["part"][0],
        json!({"name": "includeResolvedAllergies", "valueBoolean": true})
    );
    let all = parameters(
        &nhs,
        &[
            "Condition",
            "Encounter",
            "Immunization",
            "Observation",
            "ServiceRequest",
        ],
    );
    assert_eq!(all["parameter"].as_array().map(Vec::len), Some(7));
}
