//! [`PatientStatusStore`] on SQLite: the statements of [`crate::patient_status`].

use crate::patient_status::{
    push_restricted_among, put_status, restricted_numbers, status_from_row, status_of,
    PatientStatusRow, PatientStatusStore, AMONG_CHUNK,
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
            put_status(r).query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn patient_status(&self, nhs: &NhsNumber) -> Result<Option<PatientStatusRow>> {
        status_of(nhs)
            .fetch_optional(&self.read, status_from_row)
            .await
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
