//! [`PatientStatusStore`] on SQLite.

use crate::common::ts;
use crate::patient_status::{
    push_restricted_among, restricted_numbers, status_from_row, PatientStatusRow,
    PatientStatusStore, AMONG_CHUNK, COLUMNS, UPSERT,
};
use crate::{Result, SqliteStore};
use async_trait::async_trait;
use mcr_domain::NhsNumber;
use std::collections::HashSet;

#[async_trait]
impl PatientStatusStore for SqliteStore {
    async fn put_patient_statuses(&self, rows: &[PatientStatusRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut writer = self.write_conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        for r in rows {
            sqlx::query(&format!(
                "INSERT INTO patient_status ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5){UPSERT}"
            ))
            .bind(r.nhs_number.as_str())
            .bind(r.restricted)
            .bind(r.deceased.as_deref())
            .bind(&r.said_by)
            .bind(ts(&r.updated_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn patient_status(&self, nhs: &NhsNumber) -> Result<Option<PatientStatusRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM patient_status WHERE nhs_number = ?1"
        ))
        .bind(nhs.as_str())
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(status_from_row)
        .transpose()
    }

    async fn restricted_among(&self, nhs: &[NhsNumber]) -> Result<HashSet<NhsNumber>> {
        let mut out = HashSet::new();
        for chunk in nhs.chunks(AMONG_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
            push_restricted_among(&mut qb, chunk);
            let rows = qb.build().fetch_all(&self.read).await?;
            out.extend(restricted_numbers(&rows)?);
        }
        Ok(out)
    }
}
