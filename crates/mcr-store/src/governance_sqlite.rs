//! Governance records on SQLite.
//!
//! A change is written with its audit record through the audit's group commit: in the same
//! `BEGIN IMMEDIATE` transaction on the single writer connection as the records and changes
//! of the callers it was batched with, the governance rows inserted before the audit records,
//! so a failed append rolls the governance rows back.

use crate::common::{parse_nhs, parse_ts, ts};
use crate::{
    AuditAppend, AuditRow, ChainFn, EmergencyRow, GovernanceChange, GovernanceRecords,
    GovernanceStore, ObjectionRow, PermissionRow, RelationshipRow, Result, SqliteStore, StoreError,
};
use async_trait::async_trait;
use mcr_domain::NhsNumber;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

#[async_trait]
impl GovernanceStore for SqliteStore {
    async fn record_governance(
        &self,
        change: &GovernanceChange,
        audit: &AuditAppend,
        chain: &ChainFn,
    ) -> Result<AuditRow> {
        // Concurrent changes share one transaction with their audit records (group commit).
        self.group_append(Some(change), audit, chain).await
    }

    async fn governance(&self, nhs: &NhsNumber) -> Result<GovernanceRecords> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| crate::common::governance_sql("?1"));
        let rows = sqlx::query(SQL.as_str())
            .bind(nhs.as_str())
            .fetch_all(&self.read)
            .await?;
        crate::common::governance_from_rows(&rows, |row| get(row, "governance", "t"), &READERS)
    }
}

pub(crate) async fn insert_change(
    conn: &mut SqliteConnection,
    change: &GovernanceChange,
) -> Result<()> {
    match change {
        GovernanceChange::Permission(p) => {
            sqlx::query(
                "INSERT INTO permission (nhs_number, org_code, user_id, decision, given_by, at, \
                 reason_code, reason_text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(p.nhs_number.as_str())
            .bind(&p.org_code)
            .bind(&p.user_id)
            .bind(&p.decision)
            .bind(&p.given_by)
            .bind(ts(&p.at))
            .bind(p.reason_code.as_deref())
            .bind(p.reason_text.as_deref())
            .execute(&mut *conn)
            .await?;
        }
        GovernanceChange::Relationship(r) => {
            sqlx::query(
                "INSERT INTO relationship (nhs_number, org_code, kind, user_id, reason, \
                 \"start\", \"end\", recorded_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(r.nhs_number.as_str())
            .bind(&r.org_code)
            .bind(&r.kind)
            .bind(r.user_id.as_deref())
            .bind(r.reason.as_deref())
            .bind(ts(&r.start))
            .bind(r.end.as_ref().map(ts))
            .bind(&r.recorded_by)
            .execute(&mut *conn)
            .await?;
        }
        GovernanceChange::Objection(o) => {
            sqlx::query(
                "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                 override_reason, by_role, note, at, ends_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(o.nhs_number.as_str())
            .bind(&o.state)
            .bind(&o.recorded_by)
            .bind(&o.on_whose_word)
            .bind(o.override_reason.as_deref())
            .bind(o.by_role.as_deref())
            .bind(o.note.as_deref())
            .bind(ts(&o.at))
            .bind(o.ends_at.as_ref().map(ts))
            .execute(&mut *conn)
            .await?;
        }
        GovernanceChange::Emergency(e) => {
            sqlx::query(
                "INSERT INTO emergency_access (nhs_number, user_id, org_code, reason_code, \
                 reason_text, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(e.nhs_number.as_str())
            .bind(&e.user_id)
            .bind(&e.org_code)
            .bind(&e.reason_code)
            .bind(&e.reason_text)
            .bind(ts(&e.started_at))
            .execute(&mut *conn)
            .await?;
        }
        GovernanceChange::CareEvent(e) => crate::care_event::upsert_in_sqlite(conn, e).await?,
    }
    Ok(())
}

fn get<T>(row: &SqliteRow, table: &str, column: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column)
        .map_err(|_| StoreError::Corrupt(format!("column {table}.{column} cannot be read")))
}

fn get_ts(row: &SqliteRow, table: &str, column: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let s: String = get(row, table, column)?;
    parse_ts(&format!("{table}.{column}"), &s)
}

fn get_nhs(row: &SqliteRow, table: &str) -> Result<NhsNumber> {
    let s: String = get(row, table, "nhs_number")?;
    parse_nhs(&format!("{table}.nhs_number"), &s)
}

fn permission_from_row(row: &SqliteRow) -> Result<PermissionRow> {
    const T: &str = "permission";
    Ok(PermissionRow {
        nhs_number: get_nhs(row, T)?,
        org_code: get(row, T, "org_code")?,
        user_id: get(row, T, "user_id")?,
        decision: get(row, T, "decision")?,
        given_by: get(row, T, "given_by")?,
        at: get_ts(row, T, "at")?,
        reason_code: get(row, T, "reason_code")?,
        reason_text: get(row, T, "reason_text")?,
    })
}

fn relationship_from_row(row: &SqliteRow) -> Result<RelationshipRow> {
    const T: &str = "relationship";
    let end: Option<String> = get(row, T, "end")?;
    Ok(RelationshipRow {
        nhs_number: get_nhs(row, T)?,
        org_code: get(row, T, "org_code")?,
        kind: get(row, T, "kind")?,
        user_id: get(row, T, "user_id")?,
        reason: get(row, T, "reason")?,
        start: get_ts(row, T, "start")?,
        end: end
            .as_deref()
            .map(|s| parse_ts("relationship.end", s))
            .transpose()?,
        recorded_by: get(row, T, "recorded_by")?,
    })
}

fn objection_from_row(row: &SqliteRow) -> Result<ObjectionRow> {
    const T: &str = "objection";
    Ok(ObjectionRow {
        nhs_number: get_nhs(row, T)?,
        state: get(row, T, "state")?,
        recorded_by: get(row, T, "recorded_by")?,
        on_whose_word: get(row, T, "on_whose_word")?,
        override_reason: get(row, T, "override_reason")?,
        by_role: get(row, T, "by_role")?,
        note: get(row, T, "note")?,
        at: get_ts(row, T, "at")?,
        ends_at: {
            let e: Option<String> = get(row, T, "ends_at")?;
            e.as_deref()
                .map(|s| parse_ts("objection.ends_at", s))
                .transpose()?
        },
    })
}

fn emergency_from_row(row: &SqliteRow) -> Result<EmergencyRow> {
    const T: &str = "emergency_access";
    Ok(EmergencyRow {
        nhs_number: get_nhs(row, T)?,
        user_id: get(row, T, "user_id")?,
        org_code: get(row, T, "org_code")?,
        reason_code: get(row, T, "reason_code")?,
        reason_text: get(row, T, "reason_text")?,
        started_at: get_ts(row, T, "started_at")?,
    })
}

/// [`crate::Store::view_inputs`] on sqlite.
pub(crate) async fn view_inputs(store: &SqliteStore, nhs: &NhsNumber) -> Result<crate::ViewInputs> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::common::view_inputs_sql("?1"));
    let rows = store.read_for_view(SQL.as_str(), nhs.as_str()).await?;
    crate::common::view_inputs_from_rows(
        &rows,
        |row| get(row, "view inputs", "t"),
        &crate::common::IndexReaders {
            patient: crate::common::patient_from_row,
            link: crate::common::link_from_row,
        },
        &READERS,
    )
}

/// How this backend reads each governance table's row of a union statement.
const READERS: crate::common::GovernanceReaders<SqliteRow> = crate::common::GovernanceReaders {
    permission: permission_from_row,
    relationship: relationship_from_row,
    objection: objection_from_row,
    emergency: emergency_from_row,
    care_event: crate::care_event::care_event_from_row::<SqliteRow>,
};
