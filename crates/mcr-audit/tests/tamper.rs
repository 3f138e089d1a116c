//! Tampering with the trail directly in the database, as someone with the database's admin
//! rights could (dropping the append-only triggers first), and `verify` naming the first
//! record that cannot be trusted. Every case runs on SQLite and on PostgreSQL.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mcr_audit::{verify_with, AuditEvent, CheckpointKey, Checkpointer, SourceAudit, Verification};
use mcr_store::{AuditAppend, Store};
use std::sync::Arc;

const RECORDS: i64 = 25;
const EVERY: u64 = 10;

enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Db::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// What an attacker with admin rights does first.
    async fn drop_guards(&self) {
        match self {
            Db::Sqlite(_) => {
                self.exec(
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                     DROP TRIGGER audit_checkpoint_no_update; DROP TRIGGER audit_checkpoint_no_delete;",
                )
                .await
            }
            Db::Pg(_) => {
                self.exec(
                    "DROP TRIGGER audit_log_no_update_delete ON audit_log; \
                     DROP TRIGGER audit_checkpoint_no_update_delete ON audit_checkpoint;",
                )
                .await
            }
        }
    }
}

fn key() -> CheckpointKey {
    CheckpointKey::from_bytes(&[7u8; 32]).expect("tamper test")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("a valid time")
}

fn event(i: i64) -> AuditEvent {
    AuditEvent {
        at: t0() + Duration::seconds(i),
        correlation_id: format!("req-{i}"),
        system: None,
        user_id: "ae.okafor".into(),
        user_name: "Dr Chidi Okafor".into(),
        role: "clinician".into(),
        org_code: "RWH".into(),
        org_name: "East and North Hertfordshire NHS Trust".into(),
        patient: Some("9990000018".into()),
        purpose: "directcare".into(),
        action: mcr_audit::Action::ViewRecord,
        outcome: mcr_audit::Outcome::Permit,
        basis: Some("legal-basis".into()),
        detail: None,
        sources: vec![SourceAudit {
            source: "gp".into(),
            org_code: "E82000".into(),
            status: "ok".into(),
            items: 12,
            withheld: 0,
            not_tied: 0,
            not_shown: 0,
            unsearchable: Vec::new(),
        }],
        // Records from 13 on name the CIS2 role profile the user worked in; those before, as
        // every record made before role profiles were recorded, name none.
        role_profile_id: (i > 12).then(|| "555254240100".to_owned()),
    }
}

/// A fresh trail of 25 records with signed checkpoints at 10 and 20.
async fn trail(backend: &str, dir: &std::path::Path) -> (Arc<dyn Store>, Db) {
    let url = match backend {
        "sqlite" => mcr_testkit::sqlite_url(dir),
        _ => mcr_testkit::postgres_url().await,
    };
    let store = mcr_store::connect_and_migrate(&url)
        .await
        .expect("tamper test");
    let cp = Checkpointer::new(key(), EVERY);
    for i in 1..=RECORDS {
        let row = mcr_audit::record(store.as_ref(), &event(i))
            .await
            .expect("tamper test");
        cp.after_append(store.as_ref(), row.seq, &row.hash, t0())
            .await;
    }
    let db = match backend {
        "sqlite" => Db::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("tamper test")),
        _ => Db::Pg(sqlx::PgPool::connect(&url).await.expect("tamper test")),
    };
    db.drop_guards().await;
    (store, db)
}

async fn check(store: &Arc<dyn Store>) -> Verification {
    verify_with(store.as_ref(), &[key().verifying_key()])
        .await
        .expect("tamper test")
}

fn assert_broken(v: &Verification, seq: i64, words: &str) {
    match v {
        Verification::Broken { seq: s, problem } => {
            assert_eq!(*s, seq, "{problem}");
            assert!(problem.contains(words), "expected `{words}` in: {problem}");
        }
        other => panic!("expected broken at {seq}, got {other:?}"),
    }
}

/// Moves records `from..` by `by` positions (through negative numbers, so the primary key is
/// never violated mid-statement).
async fn shift(db: &Db, from: i64, by: i64) {
    db.exec(&format!(
        "UPDATE audit_log SET seq = -(seq + ({by})) WHERE seq >= {from}"
    ))
    .await;
    db.exec("UPDATE audit_log SET seq = -seq WHERE seq < 0")
        .await;
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn insert_row(db: &Db, seq: i64, prev_hash: &str, hash: &str, a: &AuditAppend) {
    let at = a.at.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
    db.exec(&format!(
        "INSERT INTO audit_log (seq, at, correlation_id, user_id, org_code, patient, action, outcome, payload, prev_hash, hash) \
         VALUES ({seq}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        sql_text(&at),
        sql_text(&a.correlation_id),
        sql_text(&a.user_id),
        sql_text(&a.org_code),
        sql_text(a.patient.as_deref().unwrap_or_default()),
        sql_text(&a.action),
        sql_text(&a.outcome),
        sql_text(&a.payload),
        sql_text(prev_hash),
        sql_text(hash),
    ))
    .await;
}

async fn row(store: &Arc<dyn Store>, seq: i64) -> mcr_store::AuditRow {
    store
        .audit_rows(seq - 1, 1)
        .await
        .expect("tamper test")
        .remove(0)
}

async fn all_cases(backend: &str) {
    let dir = tempfile::tempdir().expect("tamper test");

    // Untouched.
    let (store, _db) = trail(backend, dir.path()).await;
    match check(&store).await {
        Verification::Intact {
            records,
            head,
            checkpoints,
        } => {
            assert_eq!((records, checkpoints), (25, 2));
            assert_eq!(head, row(&store, 25).await.hash);
        }
        other => panic!("{other:?}"),
    }

    // Edited: one record's content changed in place.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET payload = replace(payload, 'ae.okafor', 'someone.else') WHERE seq = 7").await;
    assert_broken(&check(&store).await, 7, "altered");

    // Edited in an indexed column only.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET outcome = 'deny' WHERE seq = 13")
        .await;
    assert_broken(&check(&store).await, 13, "altered");

    // A role profile id changed, removed, or added to a record that had none.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET role_profile_id = '555254242102' WHERE seq = 15")
        .await;
    assert_broken(&check(&store).await, 15, "altered");
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET role_profile_id = NULL WHERE seq = 14")
        .await;
    assert_broken(&check(&store).await, 14, "altered");
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET role_profile_id = '555254242102' WHERE seq = 5")
        .await;
    assert_broken(&check(&store).await, 5, "altered");

    // Deleted, leaving a gap.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("DELETE FROM audit_log WHERE seq = 7").await;
    assert_broken(&check(&store).await, 7, "deleted");

    // Deleted, and the later records renumbered to close the gap.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("DELETE FROM audit_log WHERE seq = 7").await;
    shift(&db, 8, -1).await;
    assert_broken(&check(&store).await, 7, "deleted");

    // Inserted, by someone who knows the hash algorithm: a well-formed record linked to 6.
    let (store, db) = trail(backend, dir.path()).await;
    let six = row(&store, 6).await;
    shift(&db, 7, 1).await;
    let fake = mcr_audit::to_append(&AuditEvent {
        user_id: "cover.story".into(),
        ..event(7)
    })
    .expect("tamper test");
    let hash = mcr_audit::chain_hash(7, &six.hash, &fake);
    insert_row(&db, 7, &six.hash, &hash, &fake).await;
    assert_broken(&check(&store).await, 7, "inserted");

    // Inserted with a made-up hash.
    let (store, db) = trail(backend, dir.path()).await;
    let six = row(&store, 6).await;
    shift(&db, 7, 1).await;
    insert_row(&db, 7, &six.hash, &"ab".repeat(32), &fake).await;
    assert_broken(&check(&store).await, 7, "inserted");

    // Reordered: records 7 and 8 swap places.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("UPDATE audit_log SET seq = CASE seq WHEN 7 THEN -8 ELSE -7 END WHERE seq IN (7, 8)")
        .await;
    db.exec("UPDATE audit_log SET seq = -seq WHERE seq < 0")
        .await;
    assert_broken(&check(&store).await, 7, "reordered");

    // Edited and every later hash re-computed: only the signed checkpoint at 20 shows it.
    let (store, db) = trail(backend, dir.path()).await;
    let rows = store.audit_rows(0, 100).await.expect("tamper test");
    let mut prev = rows[10].hash.clone();
    for r in &rows[11..] {
        let mut rec = r.record.clone();
        if r.seq == 12 {
            rec.payload = rec.payload.replace("ae.okafor", "someone.else");
        }
        let hash = mcr_audit::chain_hash(r.seq, &prev, &rec);
        db.exec(&format!(
            "UPDATE audit_log SET payload = {}, prev_hash = {}, hash = {} WHERE seq = {}",
            sql_text(&rec.payload),
            sql_text(&prev),
            sql_text(&hash),
            r.seq
        ))
        .await;
        prev = hash;
    }
    assert_broken(&check(&store).await, 11, "signed checkpoint at record 20");

    // Cut from the end, past a checkpoint.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec("DELETE FROM audit_log WHERE seq >= 16").await;
    assert_broken(&check(&store).await, 16, "vouches for record 20");

    // A checkpoint forged with another key.
    let (store, _db) = trail(backend, dir.path()).await;
    let head = row(&store, 25).await;
    let forger = CheckpointKey::from_bytes(&[9u8; 32]).expect("tamper test");
    store
        .add_checkpoint(&forger.sign(25, &head.hash, t0()))
        .await
        .expect("tamper test");
    assert_broken(&check(&store).await, 25, "not trusted");

    // A checkpoint's hash altered.
    let (store, db) = trail(backend, dir.path()).await;
    db.exec(&format!(
        "UPDATE audit_checkpoint SET hash = {} WHERE seq = 10",
        sql_text(&"cd".repeat(32))
    ))
    .await;
    assert_broken(&check(&store).await, 10, "signature does not match");
}

#[tokio::test]
async fn tampering_is_found_on_sqlite() {
    all_cases("sqlite").await;
}

#[tokio::test]
async fn tampering_is_found_on_postgres() {
    all_cases("postgres").await;
}

#[tokio::test]
async fn key_files_in_every_accepted_form_sign_the_same() {
    let seed = [3u8; 32];
    let raw = CheckpointKey::from_bytes(&seed).expect("tamper test");
    let hexed = CheckpointKey::from_bytes(hex::encode(seed).as_bytes()).expect("tamper test");
    assert_eq!(raw.public_hex(), hexed.public_hex());
    // PKCS#8 v1 DER of the same seed: the fixed Ed25519 prefix, then the seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    assert_eq!(
        CheckpointKey::from_bytes(&der)
            .expect("tamper test")
            .public_hex(),
        raw.public_hex()
    );
    use base64::Engine;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    assert_eq!(
        CheckpointKey::from_bytes(pem.as_bytes())
            .expect("tamper test")
            .public_hex(),
        raw.public_hex()
    );
    assert!(CheckpointKey::from_bytes(b"not a key").is_err());
    assert!(
        !format!("{raw:?}").contains(&hex::encode(seed)),
        "the private key is never printed"
    );
}
