//! The protected person list: staff members, public figures and others whose records privacy
//! officers want to hear about whenever they are viewed. Privacy officers add, remove and list
//! (each audited, refusals too); the watch reads the list from a cache, so a view never waits
//! for the store (except the very first of a gateway): a stale cache is refreshed in the
//! background, and this gateway's own changes update it at once.

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Utc};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::ProtectedPersonRow;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Why someone is on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtectedCategory {
    /// A member of staff of an organisation in the programme.
    Staff,
    /// A public figure (a politician, a celebrity, …).
    PublicFigure,
    Other,
}

impl ProtectedCategory {
    pub const ALL: [ProtectedCategory; 3] = [Self::Staff, Self::PublicFigure, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::PublicFigure => "public-figure",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One person on the list, as a privacy officer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectedPerson {
    pub nhs_number: String,
    pub category: String,
    pub note: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

impl From<ProtectedPersonRow> for ProtectedPerson {
    fn from(r: ProtectedPersonRow) -> Self {
        Self {
            nhs_number: r.nhs_number.as_str().to_owned(),
            category: r.category,
            note: r.note,
            added_by: r.added_by,
            added_at: r.added_at,
        }
    }
}

/// NHS number to category.
type List = Arc<HashMap<String, String>>;

/// The list as the watch reads it, and when it was read.
#[derive(Debug, Default)]
pub(crate) struct ProtectedCache {
    list: RwLock<Option<(Instant, List)>>,
    refreshing: AtomicBool,
}

impl ProtectedCache {
    pub(crate) fn set(&self, list: HashMap<String, String>) {
        if let Ok(mut l) = self.list.write() {
            *l = Some((Instant::now(), Arc::new(list)));
        }
    }

    pub(crate) fn lookup(&self, nhs: &str) -> Option<String> {
        self.snapshot()?.1.get(nhs).cloned()
    }

    fn snapshot(&self) -> Option<(Instant, List)> {
        self.list.read().ok().and_then(|l| l.clone())
    }

    fn update(&self, f: impl FnOnce(&mut HashMap<String, String>)) {
        if let Ok(mut l) = self.list.write() {
            if let Some((at, list)) = l.as_mut() {
                f(Arc::make_mut(list));
                *at = Instant::now();
            }
        }
    }
}

const NOTE_MAX: usize = 500;

impl Gateway {
    /// The patient's category on the protected person list, from the cache (read from the
    /// store only if this gateway has never read it; refreshed in the background when stale).
    /// A list that cannot be read is logged and counted, and checks nothing until it can.
    pub(crate) async fn protected_category(&self, nhs: &NhsNumber) -> Option<String> {
        let cache = &self.watch.protected;
        let list = match cache.snapshot() {
            Some((at, list)) => {
                if at.elapsed() > self.watch.config.protected_refresh
                    && !cache.refreshing.swap(true, Ordering::AcqRel)
                {
                    let gw = self.clone();
                    tokio::spawn(async move {
                        gw.reload_protected().await;
                        gw.watch
                            .protected
                            .refreshing
                            .store(false, Ordering::Release);
                    });
                }
                list
            }
            None => {
                self.reload_protected().await;
                cache.snapshot()?.1
            }
        };
        list.get(nhs.as_str()).cloned()
    }

    async fn reload_protected(&self) {
        match self.store.protected_persons().await {
            Ok(rows) => self.watch.protected.set(
                rows.into_iter()
                    .map(|r| (r.nhs_number.as_str().to_owned(), r.category))
                    .collect(),
            ),
            Err(e) => {
                self.metrics.watch_protected_unreadable();
                tracing::error!(error = %e, "the protected person list could not be read: views are not checked against it");
            }
        }
    }

    fn must_keep_the_list(&self, ctx: &RequestContext) -> Result<(), String> {
        let org = &ctx.principal.organisation;
        if ctx.principal.role == mcr_domain::Role::PrivacyOfficer && org.member && !org.suspended {
            Ok(())
        } else {
            Err(
                "Only privacy officers of member organisations can keep the protected person list."
                    .into(),
            )
        }
    }

    async fn refuse_list(
        &self,
        ctx: &RequestContext,
        action: Action,
        patient: Option<&str>,
        why: String,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, patient);
        event.outcome = Outcome::Deny;
        event.detail = Some(why.clone());
        match self.audit(&event).await {
            Ok(_) => GatewayError::Forbidden(why),
            Err(e) => e,
        }
    }

    /// Put a patient on the protected person list (or change why they are on it). Privacy
    /// officers only; audited (`protect-person`), refusals too.
    pub async fn add_protected_person(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        category: &str,
        note: &str,
    ) -> Result<i64, GatewayError> {
        const ACTION: Action = Action::ProtectPerson;
        if let Err(why) = self.must_keep_the_list(ctx) {
            return Err(self.refuse_list(ctx, ACTION, Some(nhs.as_str()), why).await);
        }
        let Some(category) = ProtectedCategory::parse(category.trim()) else {
            return Err(GatewayError::Invalid(
                "The category must be staff, public-figure or other.".into(),
            ));
        };
        let note = note.trim();
        if note.is_empty() {
            return Err(GatewayError::Invalid(
                "Say why this person is on the list (e.g. \"works at the practice\").".into(),
            ));
        }
        if note.chars().count() > NOTE_MAX || note.chars().any(char::is_control) {
            return Err(GatewayError::Invalid(format!(
                "The note must be one line of at most {NOTE_MAX} characters."
            )));
        }
        let now = self.clock.now();
        let row = ProtectedPersonRow {
            nhs_number: nhs.clone(),
            category: category.as_str().into(),
            note: note.into(),
            added_by: ctx.principal.user_id.clone(),
            added_at: now,
        };
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = Outcome::Added;
        event.basis = Some(category.as_str().into());
        event.detail = Some(note.into());
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let audited = self
            .store
            .add_protected_person(&row, &append, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "protected person not added");
                GatewayError::AuditUnavailable
            })?;
        self.after_append(&audited).await;
        self.watch.protected.update(|l| {
            l.insert(nhs.as_str().to_owned(), category.as_str().to_owned());
        });
        Ok(audited.seq)
    }

    /// Take a patient off the protected person list. Privacy officers only; audited
    /// (`unprotect-person`), refusals too. `None` (nothing written) when they were not on it.
    pub async fn remove_protected_person(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<Option<i64>, GatewayError> {
        const ACTION: Action = Action::UnprotectPerson;
        if let Err(why) = self.must_keep_the_list(ctx) {
            return Err(self.refuse_list(ctx, ACTION, Some(nhs.as_str()), why).await);
        }
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = Outcome::Removed;
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let removed = self
            .store
            .remove_protected_person(nhs, &append, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "protected person not removed");
                GatewayError::AuditUnavailable
            })?;
        let Some(row) = removed else {
            return Ok(None);
        };
        self.after_append(&row).await;
        self.watch.protected.update(|l| {
            l.remove(nhs.as_str());
        });
        Ok(Some(row.seq))
    }

    /// Everyone on the protected person list. Privacy officers only; audited
    /// (`read-protected-persons`), refusals too.
    pub async fn protected_persons(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<ProtectedPerson>, GatewayError> {
        const ACTION: Action = Action::ReadProtectedPersons;
        if let Err(why) = self.must_keep_the_list(ctx) {
            return Err(self.refuse_list(ctx, ACTION, None, why).await);
        }
        let rows = self
            .store
            .protected_persons()
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!("{} person(s) listed", rows.len()));
        self.audit(&event).await?;
        Ok(rows.into_iter().map(ProtectedPerson::from).collect())
    }
}
