//! Governance records on both backends: each kind of change is recorded and read back oldest
//! first, every change appends one audit record to the same chain as plain appends, and a
//! change whose audit append fails leaves no governance row (and vice versa).

use chrono::{DateTime, TimeZone, Utc};
use mcr_domain::{NhsNumber, SourceId};
use mcr_store::{
    AuditAppend, AuditRow, EmergencyRow, GovernanceChange, GovernanceRecords, IndexedPatient,
    LinkMethod, ObjectionRow, PermissionRow, RelationshipRow, SourceLink, Store, ViewInputs,
    AUDIT_GENESIS_HASH,
};
use sqlx::{PgPool, SqlitePool};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// A stand-in for the audit crate's chain: deterministic and covering every field.
fn chain(seq: i64, prev_hash: &str, record: &AuditAppend) -> String {
    let mut h = DefaultHasher::new();
    seq.hash(&mut h);
    prev_hash.hash(&mut h);
    record.at.hash(&mut h);
    record.correlation_id.hash(&mut h);
    record.user_id.hash(&mut h);
    record.org_code.hash(&mut h);
    record.patient.hash(&mut h);
    record.action.hash(&mut h);
    record.outcome.hash(&mut h);
    record.payload.hash(&mut h);
    format!("{:016x}{:016x}", h.finish(), seq)
}

/// Raw access to the same database, to make the store's writes fail on purpose.
enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    /// From now on every insert into `table` fails.
    async fn refuse_inserts(&self, table: &str) {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::raw_sql(&format!(
                    "CREATE TRIGGER {table}_refused BEFORE INSERT ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                ))
                .execute(pool)
                .await
                .expect("create refusing trigger");
            }
            Raw::Postgres(pool) => {
                sqlx::raw_sql(&format!(
                    "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN RAISE EXCEPTION 'refused by the test'; END; $$; \
                     CREATE TRIGGER {table}_refused BEFORE INSERT ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION test_refuse();"
                ))
                .execute(pool)
                .await
                .expect("create refusing trigger");
            }
        }
    }

    async fn allow_inserts(&self, table: &str) {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::raw_sql(&format!("DROP TRIGGER {table}_refused"))
                    .execute(pool)
                    .await
                    .expect("drop refusing trigger");
            }
            Raw::Postgres(pool) => {
                sqlx::raw_sql(&format!("DROP TRIGGER {table}_refused ON {table}"))
                    .execute(pool)
                    .await
                    .expect("drop refusing trigger");
            }
        }
    }
}

fn nhs(s: &str) -> NhsNumber {
    NhsNumber::parse(s).expect("valid test NHS number")
}

/// A fixed instant with nanoseconds, so exact read-back is checked.
fn t(minute: u32, nanos: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 9, minute, 0)
        .single()
        .expect("valid time")
        + chrono::Duration::nanoseconds(i64::from(nanos))
}

fn audit(n: u32, action: &str, patient: &NhsNumber) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: t(50, n),
        correlation_id: format!("corr-{n}"),
        user_id: "u-admin".into(),
        org_code: "RX1".into(),
        patient: Some(patient.as_str().to_owned()),
        action: action.into(),
        outcome: "permit".into(),
        payload: format!("{{\"n\":{n},\"action\":\"{action}\"}}"),
    }
}

fn permission(p: &NhsNumber, minute: u32, user: &str, decision: &str) -> PermissionRow {
    PermissionRow {
        nhs_number: p.clone(),
        org_code: "RX1".into(),
        user_id: user.into(),
        decision: decision.into(),
        // Refusals here come from a representative, so the coded reason round-trips too.
        given_by: if decision == "refused" {
            "representative".into()
        } else {
            "patient".into()
        },
        at: t(minute, 123_456_789),
        reason_code: (decision == "refused").then(|| "parental-responsibility".to_owned()),
        reason_text: (decision == "refused").then(|| "mother, seen with the child".to_owned()),
    }
}

fn relationship(p: &NhsNumber, minute: u32, end: Option<DateTime<Utc>>) -> RelationshipRow {
    RelationshipRow {
        nhs_number: p.clone(),
        org_code: "RX1".into(),
        kind: if end.is_some() {
            "recorded".into()
        } else {
            "self-claimed".into()
        },
        user_id: end.is_none().then(|| "u-doc".to_owned()),
        reason: end.is_none().then(|| "on call for ward 7".to_owned()),
        start: t(minute, 1),
        end,
        recorded_by: "u-admin".into(),
    }
}

fn objection(p: &NhsNumber, minute: u32, state: &str) -> ObjectionRow {
    let overridden = state == "overridden";
    ObjectionRow {
        nhs_number: p.clone(),
        state: state.into(),
        recorded_by: "u-admin".into(),
        on_whose_word: if overridden {
            "u-caldicott".into()
        } else {
            "patient".into()
        },
        override_reason: overridden.then(|| "safeguarding".to_owned()),
        by_role: overridden.then(|| "caldicott-guardian".to_owned()),
        note: overridden.then(|| "case 42".to_owned()),
        at: t(minute, 999_999_999),
        ends_at: overridden.then(|| t(minute + 1, 5)),
    }
}

fn emergency(p: &NhsNumber, minute: u32) -> EmergencyRow {
    EmergencyRow {
        nhs_number: p.clone(),
        user_id: "u-doc".into(),
        org_code: "RX1".into(),
        reason_code: "unconscious".into(),
        reason_text: "brought in unconscious, no relatives".into(),
        started_at: t(minute, 0),
    }
}

/// Every record from seq 1, checked to be contiguous and correctly chained.
async fn checked_chain(store: &dyn Store) -> Vec<AuditRow> {
    let rows = store.audit_rows(0, 10_000).await.expect("audit rows");
    let mut prev = AUDIT_GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.seq,
            i64::try_from(i).expect("small") + 1,
            "seq is contiguous"
        );
        assert_eq!(
            row.prev_hash, prev,
            "seq {} links to the previous record",
            row.seq
        );
        assert_eq!(
            row.hash,
            chain(row.seq, &row.prev_hash, &row.record),
            "seq {} hash",
            row.seq
        );
        prev = row.hash.clone();
    }
    rows
}

/// What a record view reads before deciding, in one statement, is exactly what the three
/// reads give: the patient (or none), their links by source then local id, the governance lists.
async fn view_inputs_are_the_three_reads_in_one(
    store: &dyn Store,
    a: &NhsNumber,
    b: &NhsNumber,
    for_a: &GovernanceRecords,
    for_b: &GovernanceRecords,
) {
    let patient = IndexedPatient {
        nhs_number: a.clone(),
        family: "Smith".into(),
        given: "Ann Marie".into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(1970, 1, 2).expect("date"),
        gender: Some("female".into()),
        postcode: Some("LS1 4AP".into()),
        address: Some("12A HIGH ST".into()),
        gp_practice: Some("B86001".into()),
        updated_at: t(1, 123_456_789),
    };
    let link = |source: &str, local: &str, born: Option<chrono::NaiveDate>| SourceLink {
        nhs_number: a.clone(),
        source: SourceId::parse(source).expect("source id"),
        local_id: local.into(),
        method: LinkMethod::NhsNumber,
        family: "Smith".into(),
        given: "Ann".into(),
        birth_date: born,
        postcode: None,
        linked_at: t(2, 7),
    };
    store
        .upsert_patients(std::slice::from_ref(&patient))
        .await
        .expect("patient");
    // Written out of order; read by source, then local id.
    let links = [
        link("gp", "z9", None),
        link("acute", "b2", chrono::NaiveDate::from_ymd_opt(1970, 1, 2)),
        link("acute", "a1", None),
    ];
    store.upsert_links(&links).await.expect("links");
    // Pairs in the matching queue naming the patient: written out of order, read by source,
    // then local id, with their score and dates as written.
    let candidate = |source: &str, local: &str, score: f64| mcr_store::MatchCandidateRow {
        source: SourceId::parse(source).expect("source id"),
        local_id: local.into(),
        nhs_number: a.clone(),
        kind: "possible-wrong-nhs-number".into(),
        score,
        agreement: "family=exact sex=disagree nhs-number=agree".into(),
        guard: None,
        family: "Smith".into(),
        given: "Anne".into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(1971, 2, 1),
        gender: Some("male".into()),
        postcode: None,
        found_at: t(3, 250_000_000),
    };
    let candidates = [candidate("gp", "q1", -3.25), candidate("acute", "c3", 7.5)];
    store
        .replace_match_candidates(&[], &candidates)
        .await
        .expect("candidates");

    let read = store.view_inputs(a).await.expect("view inputs");
    assert_eq!(
        read,
        ViewInputs {
            patient: store.patient(a).await.expect("patient"),
            links: store.links(a).await.expect("links"),
            governance: store.governance(a).await.expect("governance"),
            restricted: false,
            match_candidates: store.match_candidates_for(a).await.expect("candidates"),
        }
    );
    assert_eq!(read.patient, Some(patient));
    let order: Vec<(&str, &str)> = read
        .links
        .iter()
        .map(|l| (l.source.as_str(), l.local_id.as_str()))
        .collect();
    assert_eq!(order, [("acute", "a1"), ("acute", "b2"), ("gp", "z9")]);
    assert_eq!(&read.governance, for_a);
    assert_eq!(
        read.match_candidates,
        [candidates[1].clone(), candidates[0].clone()]
    );

    // Restricted, as PDS says: read in the same statement.
    store
        .put_patient_statuses(&[mcr_store::PatientStatusRow {
            nhs_number: a.clone(),
            restricted: true,
            deceased: None,
            said_by: "pds".into(),
            updated_at: t(3, 0),
        }])
        .await
        .expect("status");
    let read = store.view_inputs(a).await.expect("view inputs");
    assert!(read.restricted);
    assert_eq!(read.links.len(), 3);
    assert_eq!(&read.governance, for_a);

    // Governance records but no index entry: no patient, no links, the records all the same.
    assert_eq!(
        store.view_inputs(b).await.expect("view inputs"),
        ViewInputs {
            governance: for_b.clone(),
            ..ViewInputs::default()
        }
    );
}

async fn story(store: &dyn Store, raw: Raw) {
    let a = nhs("9434765919");
    let b = nhs("9434765870");
    assert_eq!(
        store.governance(&a).await.expect("read"),
        GovernanceRecords::default()
    );

    let mut expected_audit: Vec<AuditAppend> = Vec::new();
    let mut n = 0;
    let mut next_audit = |action: &str, p: &NhsNumber| {
        n += 1;
        audit(n, action, p)
    };

    // A plain append first: governance changes continue the same chain.
    let first = next_audit("view-record", &a);
    let row = store.append_audit(&first, &chain).await.expect("append");
    assert_eq!(row.seq, 1);
    expected_audit.push(first);

    // Recorded out of time order; read back by time, equal times by insertion order.
    let changes = vec![
        GovernanceChange::Permission(permission(&a, 20, "u-late", "given")),
        GovernanceChange::Permission(permission(&a, 10, "u-early", "given")),
        GovernanceChange::Permission(permission(&a, 10, "u-same-time", "refused")),
        GovernanceChange::Permission(permission(&b, 5, "u-other-patient", "given")),
        GovernanceChange::Relationship(relationship(&a, 30, None)),
        GovernanceChange::Relationship(relationship(&a, 15, Some(t(45, 7)))),
        GovernanceChange::Objection(objection(&a, 11, "active")),
        GovernanceChange::Objection(objection(&a, 12, "overridden")),
        GovernanceChange::Objection(objection(&a, 13, "withdrawn")),
        GovernanceChange::Emergency(emergency(&a, 40)),
        GovernanceChange::Emergency(emergency(&b, 41)),
    ];
    for change in &changes {
        let record = next_audit("record-governance", &a);
        let row = store
            .record_governance(change, &record, &chain)
            .await
            .expect("record");
        assert_eq!(
            row.seq,
            i64::try_from(expected_audit.len()).expect("small") + 1
        );
        assert_eq!(row.record, record);
        expected_audit.push(record);
    }
    // And a plain append after them.
    let last = next_audit("view-record", &a);
    store.append_audit(&last, &chain).await.expect("append");
    expected_audit.push(last);

    let pick = |i: usize| changes[i].clone();
    let unwrap_perm = |c: GovernanceChange| match c {
        GovernanceChange::Permission(p) => p,
        other => panic!("not a permission: {other:?}"),
    };
    let unwrap_rel = |c: GovernanceChange| match c {
        GovernanceChange::Relationship(r) => r,
        other => panic!("not a relationship: {other:?}"),
    };
    let unwrap_obj = |c: GovernanceChange| match c {
        GovernanceChange::Objection(o) => o,
        other => panic!("not an objection: {other:?}"),
    };
    let unwrap_em = |c: GovernanceChange| match c {
        GovernanceChange::Emergency(e) => e,
        other => panic!("not an emergency: {other:?}"),
    };
    let for_a = GovernanceRecords {
        permissions: vec![
            unwrap_perm(pick(1)),
            unwrap_perm(pick(2)),
            unwrap_perm(pick(0)),
        ],
        relationships: vec![unwrap_rel(pick(5)), unwrap_rel(pick(4))],
        objections: vec![
            unwrap_obj(pick(6)),
            unwrap_obj(pick(7)),
            unwrap_obj(pick(8)),
        ],
        emergencies: vec![unwrap_em(pick(9))],
        care_events: Vec::new(),
    };
    let for_b = GovernanceRecords {
        permissions: vec![unwrap_perm(pick(3))],
        emergencies: vec![unwrap_em(pick(10))],
        ..GovernanceRecords::default()
    };
    assert_eq!(store.governance(&a).await.expect("read a"), for_a);
    assert_eq!(store.governance(&b).await.expect("read b"), for_b);
    view_inputs_are_the_three_reads_in_one(store, &a, &b, &for_a, &for_b).await;

    let rows = checked_chain(store).await;
    let records: Vec<AuditAppend> = rows.into_iter().map(|r| r.record).collect();
    assert_eq!(records, expected_audit);

    // Atomicity 1: the audit append fails after the governance row was inserted in the same
    // transaction; neither is kept.
    raw.refuse_inserts("audit_log").await;
    let refused = next_audit("record-governance", &a);
    for change in [
        GovernanceChange::Permission(permission(&a, 1, "u-refused", "given")),
        GovernanceChange::Relationship(relationship(&a, 1, None)),
        GovernanceChange::Objection(objection(&a, 1, "active")),
        GovernanceChange::Emergency(emergency(&a, 1)),
    ] {
        let result = store.record_governance(&change, &refused, &chain).await;
        assert!(
            result.is_err(),
            "the audit append was refused, so the change must fail"
        );
    }
    assert_eq!(
        store.governance(&a).await.expect("read a"),
        for_a,
        "no governance row kept"
    );
    assert_eq!(checked_chain(store).await.len(), expected_audit.len());
    raw.allow_inserts("audit_log").await;

    // Atomicity 2: the governance insert fails; no audit record is appended.
    raw.refuse_inserts("emergency_access").await;
    let result = store
        .record_governance(
            &GovernanceChange::Emergency(emergency(&a, 2)),
            &refused,
            &chain,
        )
        .await;
    assert!(result.is_err(), "the governance insert was refused");
    assert_eq!(
        checked_chain(store).await.len(),
        expected_audit.len(),
        "no audit record kept"
    );
    raw.allow_inserts("emergency_access").await;
    assert_eq!(store.governance(&a).await.expect("read a"), for_a);

    // The chain carries on where it was.
    let row = store
        .record_governance(
            &GovernanceChange::Emergency(emergency(&a, 42)),
            &refused,
            &chain,
        )
        .await
        .expect("record after the failures");
    assert_eq!(
        row.seq,
        i64::try_from(expected_audit.len()).expect("small") + 1
    );
    expected_audit.push(refused);
    assert_eq!(
        store
            .governance(&a)
            .await
            .expect("read a")
            .emergencies
            .len(),
        2
    );

    // Concurrent governance changes and plain appends form one contiguous chain.
    let worker = |w: u32| {
        let p = a.clone();
        async move {
            for i in 0..5 {
                let record = audit(1000 + w * 10 + i, "concurrent", &p);
                if i % 2 == 0 {
                    let change =
                        GovernanceChange::Permission(permission(&p, 50, "u-conc", "given"));
                    store
                        .record_governance(&change, &record, &chain)
                        .await
                        .expect("record");
                } else {
                    store.append_audit(&record, &chain).await.expect("append");
                }
            }
        }
    };
    tokio::join!(worker(1), worker(2), worker(3), worker(4));
    let rows = checked_chain(store).await;
    assert_eq!(rows.len(), expected_audit.len() + 20);
    let governance = store.governance(&a).await.expect("read a");
    assert_eq!(governance.permissions.len(), 3 + 12);

    // Atomicity 3: concurrent changes share transactions (group commit); one the database
    // refuses fails only its own caller, and everyone else's change and record are kept.
    raw.refuse_inserts("relationship").await;
    let before = rows.len();
    let change = |w: u32| {
        let p = a.clone();
        async move {
            let record = audit(2000 + w, "batched", &p);
            let change = if w == 3 {
                GovernanceChange::Relationship(relationship(&p, 59, None))
            } else {
                GovernanceChange::Permission(permission(&p, 59, "u-batch", "given"))
            };
            store.record_governance(&change, &record, &chain).await
        }
    };
    let results = tokio::join!(
        change(1),
        change(2),
        change(3),
        change(4),
        change(5),
        change(6)
    );
    raw.allow_inserts("relationship").await;
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5,
    ];
    for (w, result) in (1..).zip(&results) {
        assert_eq!(result.is_ok(), w != 3, "change {w}: {result:?}");
    }
    let rows = checked_chain(store).await;
    assert_eq!(rows.len(), before + 5, "five records, one per kept change");
    let governance = store.governance(&a).await.expect("read a");
    assert_eq!(governance.permissions.len(), 3 + 12 + 5);
    assert_eq!(
        governance.relationships.len(),
        for_a.relationships.len(),
        "the refused one is not kept"
    );
}

#[tokio::test]
async fn governance_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    assert_eq!(store.backend(), "sqlite");
    let raw = SqlitePool::connect(&url).await.expect("raw connection");
    story(&*store, Raw::Sqlite(raw)).await;
}

#[tokio::test]
async fn governance_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    assert_eq!(store.backend(), "postgres");
    let raw = PgPool::connect(&url).await.expect("raw connection");
    story(&*store, Raw::Postgres(raw)).await;
}
