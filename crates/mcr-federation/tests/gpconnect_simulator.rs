//! The GP Connect consumer against the simulated practice system (`mcr_sources::gpconnect`)
//! over real HTTP: the synthetic patients' GP records come through Access Record: Structured,
//! the specification's error cases by configuration, and the simulator refuses a request that
//! breaks the specification's header and token rules the way the specification says.

use base64::Engine as _;
use mcr_domain::{
    DataClass, FailureReason, NhsNumber, OdsCode, Purpose, Role, Section, SourceStatus,
};
use mcr_federation::gpconnect::{GpConnectConfig, GpConnectSource, INTERACTION_STRUCTURED};
use mcr_federation::{
    digest, merge, FederationConfig, IdentitySigner, Received, Requester, SourceConfig,
    SourceFetch, SourceKind, SourceMeta,
};
use mcr_sources::{GpConnectOptions, GpcError, IdentityCheck, SourceHandle, SourceOptions};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const PROVIDER_ASID: &str = "200000000116";

struct Rig {
    region: mcr_synth::Region,
    handle: SourceHandle,
    source: GpConnectSource,
    signer: Arc<IdentitySigner>,
    pkcs8: Vec<u8>,
}

/// The region's GP system serving GP Connect, a patient of each error case configured.
async fn rig(errors: &[(&NhsNumber, GpcError)]) -> Rig {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 400,
        ..Default::default()
    });
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .expect("key")
        .as_ref()
        .to_vec();
    let public = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
        .expect("key")
        .public_key()
        .as_ref()
        .to_vec();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
    let slice = region.source("gp").expect("gp").clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let options = SourceOptions {
        tls: None,
        identity: Some(IdentityCheck {
            ed25519_keys: vec![x],
            issuer: None,
            required: true,
        }),
        gp_connect: Some(GpConnectOptions {
            asid: PROVIDER_ASID.into(),
            errors: errors
                .iter()
                .map(|(n, e)| (n.as_str().to_owned(), *e))
                .collect::<BTreeMap<_, _>>(),
        }),
    };
    let handle = mcr_sources::serve_with(slice.clone(), listener, Default::default(), options)
        .await
        .expect("serve");
    let signer = Arc::new(
        IdentitySigner::new(
            &pkcs8,
            "https://mcr.example",
            OdsCode::parse("MCR01").expect("ods"),
            Arc::new(mcr_domain::SystemClock),
        )
        .expect("signer"),
    );
    let config = SourceConfig {
        id: slice.id.clone(),
        organisation: slice.organisation.clone(),
        base_url: url::Url::parse(&handle.base_url()).expect("url"),
        resource_types: vec![],
        batch: false,
        kind: SourceKind::GpConnect,
        gp_connect: Some(GpConnectConfig {
            ssp_prefix: None,
            consumer_asid: "200000000115".into(),
            provider_asid: PROVIDER_ASID.into(),
            directory: None,
        }),
        deadline_ms: None,
        feed_timeout_secs: None,
        patient_search: Default::default(),
        identifier_search: Default::default(),
    };
    let source = GpConnectSource::new(config, reqwest::Client::new(), FederationConfig::default())
        .with_identity(Arc::clone(&signer));
    Rig {
        region,
        handle,
        source,
        signer,
        pkcs8,
    }
}

fn token(rig: &Rig, nhs: &NhsNumber) -> String {
    let org = OdsCode::parse("RWH").expect("ods");
    rig.signer
        .for_gp_connect(
            &Requester {
                user_id: "ae.okafor",
                role: Role::Clinician,
                org_code: &org,
                purpose: Purpose::DirectCare,
                patient: nhs,
            },
            &rig.handle.base_url(),
        )
        .expect("token")
}

const TYPES: [&str; 6] = [
    "Patient",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Encounter",
    "Observation",
];

/// A grant to view `nhs` and its policy, nothing withheld as sensitive (withholding is the
/// policy's own test).
fn granted(nhs: &NhsNumber) -> (mcr_policy::Grant, mcr_policy::PolicyConfig) {
    let (grant, mut policy) = mcr_testkit::grant(nhs, &DataClass::ALL);
    policy.sensitive = mcr_policy::SensitivityConfig {
        codes: Vec::new(),
        withhold_confidential_labels: false,
    };
    (grant, policy)
}

/// One view of `nhs`'s GP record through GP Connect, merged.
async fn view(rig: &Rig, nhs: &NhsNumber) -> mcr_domain::MergedRecord {
    view_of(rig, nhs, &TYPES).await
}

/// One view of `nhs`'s GP record through GP Connect asking for `types`, merged.
async fn view_of(rig: &Rig, nhs: &NhsNumber, types: &[&str]) -> mcr_domain::MergedRecord {
    let (grant, policy) = granted(nhs);
    let input = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let config = mcr_federation::Source::config(&rig.source);
    let meta = SourceMeta {
        source: &config.id,
        org_code: &config.organisation.code,
        org_name: &config.organisation.name,
        base_url: config.base_url.as_str(),
        local_id: "not used by GP Connect",
        elsewhere: &[],
    };
    let digest = |r: Received<'_>| digest(&input, &meta, r);
    let result = rig
        .source
        .structured_record(nhs, types, &token(rig, nhs), &digest)
        .await;
    let (outcome, warnings) = match result {
        Ok(f) => (Ok(f.resources), f.warnings),
        Err(e) => (Err(e), Vec::new()),
    };
    merge(
        &input,
        vec![SourceFetch {
            source: config.id.clone(),
            org_code: config.organisation.code.clone(),
            org_name: config.organisation.name.clone(),
            base_url: config.base_url.to_string(),
            outcome,
            elapsed_ms: 1,
            source_ms: None,
            warnings,
            cut_short: None,
            unsearchable: Vec::new(),
        }],
    )
}

fn local_id(rig: &Rig, nhs: &NhsNumber) -> String {
    rig.region
        .source("gp")
        .expect("gp")
        .patients()
        .iter()
        .find(|p| p.nhs_number.as_ref() == Some(nhs))
        .expect("held by the GP")
        .local_id
        .clone()
}

fn confidential(r: &Value) -> bool {
    r.pointer("/meta/security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x["code"] == "R"))
}

#[tokio::test]
async fn a_synthetic_patients_gp_record_comes_through_gp_connect_item_for_item() {
    let rig = rig(&[]).await;
    let gp = rig.region.source("gp").expect("gp");
    let s = &rig.region.samples;
    let has_confidential = |nhs: &NhsNumber| {
        let local = local_id(&rig, nhs);
        TYPES
            .iter()
            .any(|t| gp.resources(&local, t).iter().any(confidential))
    };
    // An ordinary patient, and one whose GP items include some labelled confidential.
    let ordinary = s
        .all_four
        .iter()
        .find(|n| !has_confidential(n))
        .expect("an ordinary sample")
        .clone();
    let labelled = s
        .sensitive
        .iter()
        .find(|n| has_confidential(n))
        .expect("a sample with confidential GP items")
        .clone();
    for (nhs, confidential_expected) in [(ordinary, false), (labelled, true)] {
        let local = local_id(&rig, &nhs);
        let record = view(&rig, &nhs).await;
        assert_eq!(record.sources[0].status, SourceStatus::Ok, "{nhs}");
        for (t, section) in [
            ("AllergyIntolerance", Section::Allergies),
            ("MedicationStatement", Section::Medications),
            ("Condition", Section::Problems),
            ("Encounter", Section::Encounters),
            ("Observation", Section::Results),
        ] {
            let r4 = gp.resources(&local, t);
            let mut want: Vec<String> = r4
                .iter()
                .filter(|r| !confidential(r))
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect();
            let mut got: Vec<String> = record
                .items(section)
                .iter()
                .filter(|i| i.resource_type == t)
                .map(|i| {
                    i.sources[0]
                        .full_url
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{t} of {nhs}");
        }
        assert_eq!(
            record.sources[0]
                .warnings
                .iter()
                .any(|w| w.contains("confidential")),
            confidential_expected,
            "{nhs}: {:?}",
            record.sources[0].warnings
        );
    }
}

#[tokio::test]
async fn the_specs_patient_errors_come_back_by_configuration_as_their_own_failures() {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 400,
        ..Default::default()
    });
    let (dissent, elsewhere, missing, broken) = (
        region.samples.all_four[0].clone(),
        region.samples.all_four[1].clone(),
        region.samples.all_four[2].clone(),
        region.samples.gp_only[0].clone(),
    );
    drop(region);
    let rig = rig(&[
        (&dissent, GpcError::Dissent),
        (&elsewhere, GpcError::NotRegistered),
        (&missing, GpcError::NotFound),
        (&broken, GpcError::InternalError),
    ])
    .await;
    let unknown = NhsNumber::parse("9434765870").expect("nhs");
    for (nhs, want) in [
        (&dissent, FailureReason::PatientDissent),
        (&elsewhere, FailureReason::NotRegistered),
        (&missing, FailureReason::PatientNotFound),
        (&unknown, FailureReason::PatientNotFound),
        (
            &broken,
            FailureReason::ProviderError {
                code: "INTERNAL_SERVER_ERROR".into(),
            },
        ),
    ] {
        let record = view(&rig, nhs).await;
        assert_eq!(
            record.sources[0].status,
            SourceStatus::Failed(want),
            "{nhs}"
        );
        assert_eq!(record.item_count(), 0);
    }
}

/// Request headers, by name.
type Headers = Vec<(&'static str, String)>;

/// A token signed with the rig's key with `claims` changed as `edit` says.
fn forged(rig: &Rig, edit: impl Fn(&mut Value)) -> String {
    let nhs = NhsNumber::parse("9434765919").expect("nhs");
    let good = token(rig, &nhs);
    let body = good.split('.').nth(1).expect("jws");
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .expect("b64"),
    )
    .expect("json");
    edit(&mut claims);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&rig.pkcs8);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .expect("sign")
}

#[tokio::test]
async fn the_simulator_refuses_a_request_that_breaks_the_specs_rules_as_the_spec_says() {
    let rig = rig(&[]).await;
    let nhs = rig.region.samples.all_four[0].clone();
    let url = format!("{}/Patient/$gpc.getstructuredrecord", rig.handle.base_url());
    let body = mcr_federation::gpconnect::parameters(&nhs, &["AllergyIntolerance"]).to_string();
    let good_token = token(&rig, &nhs);
    let client = reqwest::Client::new();
    let send = |headers: Headers, body: String| {
        let mut rb = client
            .post(&url)
            .header("content-type", "application/fhir+json");
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        async move {
            let r = rb.body(body).send().await.expect("answer");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            (
                status,
                v["issue"][0]["details"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                v["issue"][0]["diagnostics"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        }
    };
    let headers = |token: &str| {
        vec![
            (
                "Ssp-TraceID",
                "629ea9ba-a077-4d99-b289-7a9b19fd4e03".to_owned(),
            ),
            ("Ssp-From", "200000000115".to_owned()),
            ("Ssp-To", PROVIDER_ASID.to_owned()),
            ("Ssp-InteractionID", INTERACTION_STRUCTURED.to_owned()),
            ("Authorization", format!("Bearer {token}")),
        ]
    };
    // The well-formed request is answered.
    let (status, _, _) = send(headers(&good_token), body.clone()).await;
    assert_eq!(status, 200);

    let without = |name: &str| {
        headers(&good_token)
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect::<Vec<_>>()
    };
    let mut wrong_to = headers(&good_token);
    wrong_to[2].1 = "999999999999".into();
    let mut wrong_interaction = headers(&good_token);
    wrong_interaction[3].1 = "urn:nhs:names:services:gpconnect:fhir:rest:read:patient-1".into();
    let cases: Vec<(Headers, String, u16, &str, &str)> = vec![
        (without("Ssp-TraceID"), body.clone(), 400, "BAD_REQUEST", "Ssp-TraceID"),
        (without("Ssp-From"), body.clone(), 400, "BAD_REQUEST", "Ssp-From"),
        (wrong_to, body.clone(), 400, "BAD_REQUEST", "Ssp-To"),
        (wrong_interaction, body.clone(), 400, "BAD_REQUEST", "Ssp-InteractionID"),
        (without("Authorization"), body.clone(), 400, "BAD_REQUEST", "token"),
        (
            headers(&forged(&rig, |c| c["reason_for_request"] = json!("secondaryuses"))),
            body.clone(),
            400,
            "BAD_REQUEST",
            "reason",
        ),
        (
            headers(&forged(&rig, |c| c["requested_scope"] = json!("organization/*.read"))),
            body.clone(),
            400,
            "BAD_REQUEST",
            "requested_scope",
        ),
        (
            headers(&forged(&rig, |c| {
                c["requesting_device"] = json!({"resourceType": "Patient"});
            })),
            body.clone(),
            400,
            "BAD_REQUEST",
            "requesting_device",
        ),
        (
            headers(&forged(&rig, |c| c["requesting_practitioner"]["id"] = json!("other"))),
            body.clone(),
            400,
            "BAD_REQUEST",
            "requesting_practitioner",
        ),
        (
            headers(&good_token),
            r#"{"resourceType":"Patient"}"#.into(),
            422,
            "INVALID_RESOURCE",
            "Parameters",
        ),
        (
            headers(&good_token),
            json!({"resourceType": "Parameters", "parameter": [{"name": "includeProblems"}]}).to_string(),
            422,
            "INVALID_PARAMETER",
            "patientNHSNumber",
        ),
        (
            headers(&good_token),
            json!({"resourceType": "Parameters", "parameter": [{"name": "patientNHSNumber",
                "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}}]})
            .to_string(),
            400,
            "INVALID_NHS_NUMBER",
            "check digit",
        ),
    ];
    for (h, b, want_status, want_code, said) in cases {
        let (status, code, diagnostics) = send(h, b).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{said}: {diagnostics}"
        );
        assert!(diagnostics.contains(said), "{said}: {diagnostics}");
    }
}

/// Fetch through `source` for the patient at `at`, keeping nothing.
async fn ask_at(
    source: &GpConnectSource,
    grant: &mcr_policy::Grant,
    at: mcr_federation::Location,
) -> Result<mcr_federation::Fetched, FailureReason> {
    let keep = |_: Received<'_>| mcr_federation::Digested::Ignored;
    mcr_federation::Source::fetch_at(
        source,
        grant,
        &at,
        &TYPES,
        &keep,
        mcr_federation::Ask::within(std::time::Duration::from_secs(10)),
    )
    .await
}

/// A grant for a GP at `practice` to view `nhs` (registered there), as the policy makes one.
fn grant_for(nhs: &NhsNumber, practice: &mcr_domain::Organisation) -> mcr_policy::Grant {
    let principal = mcr_domain::Principal {
        role_profile: None,
        user_id: "gp.patel".into(),
        name: "Dr Asha Patel".into(),
        role: Role::Clinician,
        organisation: practice.clone(),
    };
    let now = mcr_domain::Clock::now(&mcr_domain::SystemClock);
    let relationships = [mcr_policy::Relationship {
        org_code: practice.code.clone(),
        kind: mcr_policy::RelationshipKind::GpRegistration,
        derived: true,
        start: now - chrono::Duration::days(365),
        end: None,
        user_id: None,
    }];
    // With the patient's permission, as the default consent model asks.
    let permissions = [mcr_policy::PermissionRecord {
        org_code: practice.code.clone(),
        user_id: "gp.patel".into(),
        decision: mcr_policy::PermissionDecision::Given,
        given_by: mcr_policy::PermissionGiver::Patient,
        at: now,
    }];
    let request = mcr_policy::DecisionRequest {
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
    mcr_policy::decide(&request, &mcr_policy::PolicyConfig::default())
        .into_grant()
        .expect("a GP views their registered patient")
}

#[tokio::test]
async fn the_registered_practices_endpoint_is_found_in_the_directory_and_cached() {
    let rig = rig(&[]).await;
    let practices = rig.region.gp_practices.clone();
    let entries = practices
        .iter()
        .map(|p| mcr_sources::directory::DirectoryEntry {
            ods: p.code.to_string(),
            interaction: INTERACTION_STRUCTURED.into(),
            address: format!(
                "{}{}",
                rig.handle.base_url(),
                mcr_sources::gpconnect::practice_path(p.code.as_str())
            ),
            asid: PROVIDER_ASID.into(),
        })
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sds = mcr_sources::directory::serve(listener, entries, "demo-key")
        .await
        .expect("directory");
    let source_with = |ttl_secs: u64| {
        let mut config = mcr_federation::Source::config(&rig.source).clone();
        config.gp_connect = Some(GpConnectConfig {
            ssp_prefix: None,
            consumer_asid: "200000000115".into(),
            provider_asid: String::new(),
            directory: Some(mcr_federation::gpconnect::DirectoryConfig {
                url: url::Url::parse(&sds.base_url()).expect("url"),
                api_key: "demo-key".into(),
                ttl_secs,
            }),
        });
        GpConnectSource::new(config, reqwest::Client::new(), FederationConfig::default())
            .with_identity(Arc::clone(&rig.signer))
    };
    let nhs = rig.region.samples.all_four[0].clone();
    let person = rig.region.person(&nhs).expect("person");
    let practice = practices
        .iter()
        .find(|p| p.code == person.gp_practice)
        .expect("registered practice")
        .clone();
    let other = practices
        .iter()
        .find(|p| p.code != person.gp_practice)
        .expect("another practice")
        .clone();
    let grant = grant_for(&nhs, &practice);
    let at = |code: &str| mcr_federation::Location {
        source: mcr_domain::SourceId::parse("gp").expect("id"),
        local_id: local_id(&rig, &nhs),
        registered_practice: Some(code.to_owned()),
    };
    let ask = |source, code: String| ask_at(source, &grant, at(&code));
    // The registered practice's endpoint answers; a second view uses the cached endpoint.
    let cached = source_with(3600);
    let first = ask(&cached, practice.code.to_string())
        .await
        .expect("answered");
    assert!(!first.resources.is_empty());
    assert_eq!(cached.directory().expect("directory").lookups(), 1);
    assert_eq!(sds.searches(), 2, "one Endpoint and one Device search");
    ask(&cached, practice.code.to_string())
        .await
        .expect("answered");
    assert_eq!(sds.searches(), 2, "the second view used the cache");

    // Asked at another practice's endpoint, the patient is not registered there.
    let elsewhere = ask(&cached, other.code.to_string())
        .await
        .expect_err("not there");
    assert_eq!(elsewhere, FailureReason::NotRegistered);

    // A practice the directory does not know fails the source, saying why.
    match ask(&cached, "Y99999".into()).await {
        Err(FailureReason::Unreachable { detail }) => {
            assert!(
                detail.contains("directory names no GP Connect endpoint"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }

    // An expired entry is looked up again.
    let expiring = source_with(0);
    let before = sds.searches();
    ask(&expiring, practice.code.to_string())
        .await
        .expect("answered");
    ask(&expiring, practice.code.to_string())
        .await
        .expect("answered");
    assert_eq!(expiring.directory().expect("directory").lookups(), 2);
    assert_eq!(sds.searches(), before + 4);
    sds.stop();
}

// ---- Access Document ------------------------------------------------------------------------

/// The letters the simulated practice holds for `nhs`, by id.
fn held_documents(rig: &Rig, nhs: &NhsNumber) -> Vec<String> {
    let mut ids: Vec<String> = rig
        .region
        .source("gp")
        .expect("gp")
        .practice_documents(&local_id(rig, nhs))
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// Open document `id` of `nhs` through the consumer, as the rig's user.
async fn open(
    rig: &Rig,
    nhs: &NhsNumber,
    id: &str,
) -> Result<Vec<u8>, mcr_federation::document::DocumentRefusal> {
    use futures::StreamExt as _;
    let (grant, policy) = granted(nhs);
    let input = grant.filter(
        &policy,
        [],
        mcr_domain::Clock::now(&mcr_domain::SystemClock),
    );
    let config = mcr_federation::Source::config(&rig.source);
    let meta = SourceMeta {
        source: &config.id,
        org_code: &config.organisation.code,
        org_name: &config.organisation.name,
        base_url: config.base_url.as_str(),
        local_id: "not used by GP Connect",
        elsewhere: &[],
    };
    let check = |r: Received<'_>| digest(&input, &meta, r);
    let opened = rig
        .source
        .open_document_as(nhs, id, &token(rig, nhs), &check, 20 * 1024 * 1024)
        .await?;
    assert_eq!(opened.content_type, "application/pdf");
    let mut bytes = Vec::new();
    let mut body = std::pin::pin!(opened.body.into_stream());
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.expect("the whole document"));
    }
    Ok(bytes)
}

#[tokio::test]
async fn a_patients_gp_documents_are_listed_with_the_record_and_one_opens_byte_for_byte() {
    let rig = rig(&[]).await;
    let nhs = rig.region.samples.all_four[0].clone();
    let held = held_documents(&rig, &nhs);
    assert!(!held.is_empty(), "every synthetic GP patient has letters");

    let mut types = TYPES.to_vec();
    types.push("DocumentReference");
    let record = view_of(&rig, &nhs, &types).await;
    assert_eq!(record.sources[0].status, SourceStatus::Ok);
    assert!(
        record.sources[0].warnings.is_empty(),
        "{:?}",
        record.sources[0].warnings
    );
    let docs = record.items(Section::Documents);
    let mut listed: Vec<String> = docs
        .iter()
        .filter(|i| i.resource_type == "DocumentReference")
        .map(|i| {
            i.sources[0]
                .full_url
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed, held,
        "the practice's letters, listed with the record"
    );
    // The structured record came too, beside them.
    assert!(!record.items(Section::Encounters).is_empty());

    // One opened: the bytes the practice holds, exactly.
    let (content_type, want) = rig
        .region
        .source("gp")
        .and_then(|s| s.binary(&held[0]))
        .expect("held");
    assert_eq!(content_type, "application/pdf");
    let got = open(&rig, &nhs, &held[0]).await.expect("opened");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the opened bytes are the held bytes");

    // Another patient's letter is not theirs to open: the practice's list for this patient
    // does not name it, so it is not asked for.
    let other = rig.region.samples.all_four[1].clone();
    let theirs = held_documents(&rig, &other);
    assert_eq!(
        open(&rig, &nhs, &theirs[0]).await.expect_err("not listed"),
        mcr_federation::document::DocumentRefusal::NotFound
    );
}

#[tokio::test]
async fn access_documents_errors_reach_the_consumer_as_their_own_refusals_with_words() {
    use mcr_federation::document::DocumentRefusal;
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 400,
        ..Default::default()
    });
    let (dissent, elsewhere, missing, broken) = (
        region.samples.all_four[0].clone(),
        region.samples.all_four[1].clone(),
        region.samples.all_four[2].clone(),
        region.samples.gp_only[0].clone(),
    );
    drop(region);
    let rig = rig(&[
        (&dissent, GpcError::Dissent),
        (&elsewhere, GpcError::NotRegistered),
        (&missing, GpcError::NotFound),
        (&broken, GpcError::InternalError),
    ])
    .await;
    // Dissent: the document search is refused with NO_PATIENT_CONSENT, said as the banner says it.
    let id = held_documents(&rig, &dissent)[0].clone();
    let refused = open(&rig, &dissent, &id).await.expect_err("dissent");
    assert_eq!(
        refused,
        DocumentRefusal::Source(FailureReason::PatientDissent)
    );
    assert!(
        refused
            .to_string()
            .contains("the patient has declined to share their GP record"),
        "{refused}"
    );
    // The provider failing: its own code, in words.
    let id = held_documents(&rig, &broken)[0].clone();
    let refused = open(&rig, &broken, &id).await.expect_err("provider error");
    assert_eq!(
        refused,
        DocumentRefusal::Source(FailureReason::ProviderError {
            code: "INTERNAL_SERVER_ERROR".into()
        })
    );
    assert!(
        refused
            .to_string()
            .contains("failed on its side (INTERNAL_SERVER_ERROR)"),
        "{refused}"
    );
    // Not registered here, or no record: Find a patient finds no one (not an error, the
    // specification says), so there is no such document to open.
    for nhs in [&elsewhere, &missing] {
        let id = held_documents(&rig, nhs)[0].clone();
        assert_eq!(
            open(&rig, nhs, &id).await.expect_err("not found"),
            DocumentRefusal::NotFound,
            "{nhs}"
        );
    }
    // Nor is their Binary given to anyone asking for it directly: dissent is refused as
    // such, the others are records the practice does not share.
    let client = reqwest::Client::new();
    for (nhs, status, code) in [
        (&dissent, 403, "NO_PATIENT_CONSENT"),
        (&elsewhere, 404, "NO_RECORD_FOUND"),
        (&missing, 404, "NO_RECORD_FOUND"),
    ] {
        let id = held_documents(&rig, nhs)[0].clone();
        let r = client
            .get(format!("{}/documents/Binary/{id}", rig.handle.base_url()))
            .header("Ssp-TraceID", "629ea9ba-a077-4d99-b289-7a9b19fd4e03")
            .header("Ssp-From", "200000000115")
            .header("Ssp-To", PROVIDER_ASID)
            .header(
                "Ssp-InteractionID",
                mcr_federation::gpconnect::documents::INTERACTION_READ_BINARY,
            )
            .bearer_auth(token(&rig, nhs))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), status, "{nhs}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["issue"][0]["details"]["coding"][0]["code"], code, "{nhs}");
    }
    // In a record view the structured record's refusal stands for the whole source, documents
    // and all: dissent is never shown as an empty record.
    let mut types = TYPES.to_vec();
    types.push("DocumentReference");
    let record = view_of(&rig, &dissent, &types).await;
    assert_eq!(
        record.sources[0].status,
        SourceStatus::Failed(FailureReason::PatientDissent)
    );
    assert_eq!(record.item_count(), 0);
}

#[tokio::test]
async fn each_access_document_interaction_is_checked_and_refused_as_the_spec_says() {
    use mcr_federation::gpconnect::documents::{
        INTERACTION_FIND_PATIENT, INTERACTION_READ_BINARY, INTERACTION_SEARCH_DOCUMENTS,
        SEARCH_INCLUDES,
    };
    let rig = rig(&[]).await;
    let nhs = rig.region.samples.all_four[0].clone();
    let local = local_id(&rig, &nhs);
    let doc = held_documents(&rig, &nhs)[0].clone();
    let root = format!("{}/documents", rig.handle.base_url());
    let good_token = token(&rig, &nhs);
    let client = reqwest::Client::new();
    let includes = SEARCH_INCLUDES
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let find = format!(
        "{root}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{}",
        nhs.as_str()
    );
    let search = format!("{root}/Patient/{local}/DocumentReference?{includes}");
    let binary = format!("{root}/Binary/{doc}");
    let get = |url: String, interaction: &str, token: String| {
        let rb = client
            .get(url)
            .header("Ssp-TraceID", "629ea9ba-a077-4d99-b289-7a9b19fd4e03")
            .header("Ssp-From", "200000000115")
            .header("Ssp-To", PROVIDER_ASID)
            .header("Ssp-InteractionID", interaction)
            .bearer_auth(token);
        async move {
            let r = rb.send().await.expect("answer");
            let status = r.status().as_u16();
            let bytes = r.bytes().await.expect("body");
            let v: Value = serde_json::from_slice(&bytes).expect("json");
            let code = v["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let diagnostics = v["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (status, code, diagnostics, v, bytes.to_vec())
        }
    };
    // Well-formed, each is answered.
    let (status, _, _, found, _) =
        get(find.clone(), INTERACTION_FIND_PATIENT, good_token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["entry"][0]["resource"]["id"], local.as_str());
    let (status, _, _, listed, _) = get(
        search.clone(),
        INTERACTION_SEARCH_DOCUMENTS,
        good_token.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let reference = listed["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "DocumentReference")
        .expect("a DocumentReference")
        .clone();
    // The profile's elements: custodian and author the practice, type, created/indexed, the
    // attachment naming its Binary with size and type.
    let person = rig.region.person(&nhs).expect("person");
    let practice = format!("Organization/{}", person.gp_practice.as_str());
    assert_eq!(reference["custodian"]["reference"], practice.as_str());
    assert_eq!(reference["author"][0]["reference"], practice.as_str());
    assert!(reference["type"]["coding"][0]["code"].is_string());
    assert!(reference["created"].is_string() && reference["indexed"].is_string());
    let att = &reference["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    let (status, _, _, bin, raw) = get(
        att["url"].as_str().expect("url").to_owned(),
        INTERACTION_READ_BINARY,
        good_token.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bin["resourceType"], "Binary");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(bin["content"].as_str().expect("content"))
        .expect("base64");
    assert_eq!(att["size"].as_u64(), Some(bytes.len() as u64));
    assert!(raw.len() > bytes.len(), "the whole Binary arrived");

    // The interaction id must be the one the path answers; the token's claims are checked.
    let no_scope = forged(&rig, |c| {
        c.as_object_mut().expect("claims").remove("requested_scope");
    });
    let no_device = forged(&rig, |c| {
        c.as_object_mut()
            .expect("claims")
            .remove("requesting_device");
    });
    let cases: Vec<(String, &str, String, u16, &str, &str)> = vec![
        (find.clone(), INTERACTION_SEARCH_DOCUMENTS, good_token.clone(), 400, "BAD_REQUEST", "Ssp-InteractionID"),
        (search.clone(), INTERACTION_FIND_PATIENT, good_token.clone(), 400, "BAD_REQUEST", "Ssp-InteractionID"),
        (binary.clone(), INTERACTION_STRUCTURED, good_token.clone(), 400, "BAD_REQUEST", "Ssp-InteractionID"),
        (find.clone(), INTERACTION_FIND_PATIENT, no_scope.clone(), 400, "BAD_REQUEST", "requested_scope"),
        (search.clone(), INTERACTION_SEARCH_DOCUMENTS, no_device.clone(), 400, "BAD_REQUEST", "requesting_device"),
        (binary.clone(), INTERACTION_READ_BINARY, no_scope.clone(), 400, "BAD_REQUEST", "requested_scope"),
        // The specification's parameter and identity errors.
        (format!("{root}/Patient"), INTERACTION_FIND_PATIENT, good_token.clone(), 422, "INVALID_PARAMETER", "identifier"),
        (
            format!("{root}/Patient?identifier=https://example.org/id%7C{}", nhs.as_str()),
            INTERACTION_FIND_PATIENT, good_token.clone(), 422, "INVALID_IDENTIFIER_SYSTEM", "system",
        ),
        (
            format!("{root}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C9434765918"),
            INTERACTION_FIND_PATIENT, good_token.clone(), 400, "INVALID_NHS_NUMBER", "check digit",
        ),
        (
            format!("{root}/Patient/{local}/DocumentReference?_include=DocumentReference:subject:Patient"),
            INTERACTION_SEARCH_DOCUMENTS, good_token.clone(), 422, "INVALID_PARAMETER", "_include",
        ),
        (
            format!("{search}&author=https://example.org/org%7CX1"),
            INTERACTION_SEARCH_DOCUMENTS, good_token.clone(), 422, "INVALID_PARAMETER", "author",
        ),
        (
            format!("{root}/Patient/no-such-patient/DocumentReference?{includes}"),
            INTERACTION_SEARCH_DOCUMENTS, good_token.clone(), 404, "PATIENT_NOT_FOUND", "no record",
        ),
        (
            format!("{root}/Binary/{local}-no-such-document"),
            INTERACTION_READ_BINARY, good_token.clone(), 404, "NO_RECORD_FOUND", "no document",
        ),
    ];
    for (url, interaction, token, want_status, want_code, said) in cases {
        let (status, code, diagnostics, _, body) = get(url.clone(), interaction, token).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{url}: {diagnostics}"
        );
        assert!(diagnostics.contains(said), "{url}: {diagnostics}");
        // And the consumer reads each as the specification's failure.
        let reason = mcr_federation::gpconnect::failure_from(status, &body);
        let expected = match want_code {
            "INVALID_NHS_NUMBER" => FailureReason::InvalidNhsNumber,
            "PATIENT_NOT_FOUND" | "NO_RECORD_FOUND" => FailureReason::PatientNotFound,
            c => FailureReason::InvalidRequest { code: c.into() },
        };
        assert_eq!(reason, expected, "{url}");
    }

    // A search's filters: created on or after a date to come finds none; the document's own
    // type finds it.
    let (status, _, _, none, _) = get(
        format!("{search}&created=ge2999-01-01"),
        INTERACTION_SEARCH_DOCUMENTS,
        good_token.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(none["total"], 0);
    let code = reference["type"]["coding"][0]["code"]
        .as_str()
        .expect("code");
    let (_, _, _, typed, _) = get(
        format!("{search}&type=http://snomed.info/sct%7C{code}"),
        INTERACTION_SEARCH_DOCUMENTS,
        good_token,
    )
    .await;
    assert!(typed["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e["resource"]["id"] == reference["id"]));
}
