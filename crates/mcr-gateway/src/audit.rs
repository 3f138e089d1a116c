//! Reading the audit trail: the FHIR `AuditEvent` search (privacy officers see everything,
//! staff of a source organisation see the accesses that touched their data), a patient's
//! "who viewed my record" history with its download, and the privacy officer's review queue
//! of emergency accesses and self-claimed relationships with simple anomaly flags. Every read
//! of the trail is itself audited; so is every review outcome.
//!
//! Also the signed checkpoints made as records are appended ([`AuditConfig::checkpointer`]).

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::{AuditEvent, Checkpointer};
use mcr_domain::{NhsNumber, Role};
use mcr_store::{AuditQuery, AuditRow};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How the audit trail is kept and read, beyond what cannot be configured.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Signs a checkpoint every N records (none: no checkpoints are made).
    pub checkpointer: Option<Checkpointer>,
    /// The review queue flags a user who, within one hour, reaches more than this many patients
    /// without an existing care relationship (by emergency access or a self-claimed one).
    pub many_patients_per_hour: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpointer: None,
            many_patients_per_hour: 20,
        }
    }
}

/// The widest period one audit search may cover.
pub const MAX_SEARCH_DAYS: i64 = 366;
/// The most entries one page of an audit search returns (more are on the next page).
pub const MAX_SEARCH_COUNT: u32 = 1_000;
/// How far back a patient's access history goes.
pub const HISTORY_DAYS: i64 = 365;

/// The actions a privacy officer reviews: break-glass, self-claimed relationships, answers on
/// a patient's behalf that open their record, objection overrides, every lift of an objection
/// or attempt at one (refused attempts included), and the watch's flags on views.
pub const REVIEWABLE: [&str; 6] = [
    "emergency-access",
    "claim-relationship",
    crate::governance::ON_BEHALF_ACTION,
    crate::governance::OVERRIDE_ACTION,
    crate::governance::LIFT_ACTION,
    "anomaly-flag",
];
const REVIEW_ACTION: &str = "review-access";
const VIEW_ACTION: &str = "view-record";

/// `GET /fhir/AuditEvent` as the gateway understands it.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    pub patient: Option<NhsNumber>,
    /// The acting user's id.
    pub agent: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Any of these audit outcomes (`permit`, `deny`, …); empty: all.
    pub outcomes: Vec<String>,
    /// At most this many on a page (0: 100; at most [`MAX_SEARCH_COUNT`]).
    pub count: u32,
    /// Only the record with this sequence number (`_id`).
    pub id: Option<i64>,
    /// The page of records just older than this one (a `next` link).
    pub before: Option<i64>,
    /// The page of records just newer than this one (a `previous` link).
    pub after: Option<i64>,
}

/// One audit record read back.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Whose accesses a search could see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditScope {
    /// A privacy officer: every record.
    All,
    /// Staff of a source organisation: the accesses that touched its data.
    SourceOrganisation(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub scope: AuditScope,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// One page, newest first.
    pub entries: Vec<AuditEntry>,
    /// Whether records older than this page's last match too (there is a next page).
    pub older: bool,
    /// Whether records newer than this page's first match too (there is a previous page).
    pub newer: bool,
}

fn entry(row: &AuditRow) -> Result<AuditEntry, GatewayError> {
    let event: AuditEvent =
        serde_json::from_str(&row.record.payload).map_err(|_| GatewayError::StoreUnavailable)?;
    Ok(AuditEntry {
        seq: row.seq,
        event,
    })
}

fn clean_text(s: &str, what: &str, max: usize) -> Result<String, GatewayError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(GatewayError::Invalid(format!("Give {what}.")));
    }
    if t.chars().count() > max {
        return Err(GatewayError::Invalid(format!(
            "The {what} is too long: at most {max} characters."
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(GatewayError::Invalid(format!(
            "The {what} contains control characters."
        )));
    }
    Ok(t.to_owned())
}

/// The period a search covers: defaults to the year up to now, never wider than a year.
fn period(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), GatewayError> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - Duration::days(HISTORY_DAYS));
    if from > to {
        return Err(GatewayError::Invalid(
            "The period is empty: its start is after its end.".into(),
        ));
    }
    if to - from > Duration::days(MAX_SEARCH_DAYS) {
        return Err(GatewayError::Invalid(format!(
            "The period is too wide: search at most one year ({MAX_SEARCH_DAYS} days) at a time."
        )));
    }
    Ok((from, to))
}

impl Gateway {
    /// The audit configuration (checkpoints, anomaly thresholds).
    pub fn with_audit(mut self, config: AuditConfig) -> Self {
        self.audit_config = std::sync::Arc::new(config);
        self
    }

    /// Called with every record this gateway appends: signs a checkpoint when one is due.
    pub(crate) async fn after_append(&self, row: &AuditRow) {
        if let Some(cp) = &self.audit_config.checkpointer {
            cp.after_append(self.store.as_ref(), row.seq, &row.hash, self.clock.now())
                .await;
        }
    }

    fn source_orgs(&self) -> BTreeSet<String> {
        self.federation
            .sources()
            .map(|s| s.config().organisation.code.to_string())
            .collect()
    }

    fn is_privacy_officer(&self, ctx: &RequestContext) -> bool {
        let org = &ctx.principal.organisation;
        ctx.principal.role == Role::PrivacyOfficer && org.member && !org.suspended
    }

    /// Audit a refusal to read the trail, then return it.
    pub(crate) async fn refuse(
        &self,
        ctx: &RequestContext,
        action: &str,
        patient: Option<&str>,
        why: &str,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, patient);
        event.outcome = "deny".into();
        event.detail = Some(why.to_owned());
        match self.audit(&event).await {
            Ok(_) => GatewayError::Forbidden(why.to_owned()),
            Err(e) => e,
        }
    }

    async fn known_patient(
        &self,
        nhs: &NhsNumber,
    ) -> Result<mcr_store::IndexedPatient, GatewayError> {
        match self.store.patient(nhs).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(GatewayError::PatientNotFound),
            Err(_) => Err(GatewayError::StoreUnavailable),
        }
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, GatewayError> {
        self.store.query_audit(q).await.map_err(|e| {
            tracing::error!(error = %e, "audit trail could not be read");
            GatewayError::StoreUnavailable
        })
    }

    /// Search the trail (`GET /fhir/AuditEvent`). Privacy officers see every record; staff of
    /// a source organisation see the accesses that touched their organisation's data; anyone
    /// else is refused. The search is audited (`search-audit`), refusals too.
    pub async fn search_audit(
        &self,
        ctx: &RequestContext,
        search: &AuditSearch,
    ) -> Result<AuditPage, GatewayError> {
        const ACTION: &str = "search-audit";
        let patient = search.patient.as_ref().map(NhsNumber::as_str);
        let scope = if self.is_privacy_officer(ctx) {
            AuditScope::All
        } else {
            let own = ctx.principal.organisation.code.to_string();
            let org = &ctx.principal.organisation;
            if !self.source_orgs().contains(&own) || !org.member || org.suspended {
                let why = "Only privacy officers, and staff of organisations whose systems share data, can read the audit trail.";
                return Err(self.refuse(ctx, ACTION, patient, why).await);
            }
            AuditScope::SourceOrganisation(own)
        };
        let (from, to) = period(search.from, search.to, self.clock.now())?;
        if let Some(agent) = &search.agent {
            clean_text(agent, "user id", 200)?;
        }
        if let Some(nhs) = &search.patient {
            self.known_patient(nhs).await?;
        }
        let query = AuditQuery {
            patient: patient.map(str::to_owned),
            user_id: search.agent.clone(),
            source_org: match &scope {
                AuditScope::All => None,
                AuditScope::SourceOrganisation(code) => Some(code.clone()),
            },
            outcomes: search.outcomes.clone(),
            from: Some(from),
            to: Some(to),
            seq: search.id,
            before_seq: search.before,
            after_seq: search.after,
            // One more than a page: whether there is another page beyond it.
            limit: page_size(search.count) + 1,
            ..AuditQuery::default()
        };
        let mut rows = self.query(&query).await?;
        let beyond = rows.len() > page_size(search.count) as usize;
        if beyond {
            if search.after.is_some() {
                // Read upwards from `after`: the extra one is the newest.
                rows.remove(0);
            } else {
                rows.truncate(page_size(search.count) as usize);
            }
        }
        // A page reached by a link has the page it came from on its other side.
        let (older, newer) = if search.after.is_some() {
            (true, beyond)
        } else {
            (beyond, search.before.is_some())
        };
        let entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let mut event = self.event(ctx, ACTION, patient);
        event.outcome = "permit".into();
        event.detail = Some(format!(
            "audit search{}{}{}, {} to {}: {} record(s)",
            match &scope {
                AuditScope::All => String::new(),
                AuditScope::SourceOrganisation(code) => format!(" of accesses to {code} data"),
            },
            search
                .agent
                .as_ref()
                .map(|a| format!(", user {a}"))
                .unwrap_or_default(),
            if search.outcomes.is_empty() {
                String::new()
            } else {
                format!(", outcome {}", search.outcomes.join("/"))
            },
            from.format("%Y-%m-%d"),
            to.format("%Y-%m-%d"),
            entries.len()
        ));
        self.audit(&event).await?;
        Ok(AuditPage {
            scope,
            from,
            to,
            entries,
            older,
            newer,
        })
    }
}

/// Entries on one page of an audit search asking for `count` (0: the default).
fn page_size(count: u32) -> u32 {
    if count == 0 {
        100
    } else {
        count.min(MAX_SEARCH_COUNT)
    }
}

// ---------------------------------------------------------------------------------------------
// A patient's access history.

/// One view of a patient's record, in the words the patient sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLine {
    pub at: DateTime<Utc>,
    pub organisation: String,
    pub org_code: String,
    /// The viewer's role in plain words ("Doctor", "Nurse", …).
    pub role: String,
    /// Why they could look, in a few words ("With your permission", "Emergency access", …).
    pub reason: String,
    /// The full sentence recorded with the view.
    pub explanation: String,
}

/// "Who viewed my record": each view of the last 12 months, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AccessHistory {
    pub nhs_number: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub views: Vec<AccessLine>,
}

/// A file to download.
#[derive(Debug, Clone)]
pub struct Download {
    pub content_type: &'static str,
    pub filename: String,
    pub body: String,
}

/// The formats a patient can download their access history in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFormat {
    Csv,
    Json,
}

impl DownloadFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A few words for a view's basis code.
pub fn reason_words(basis: Option<&str>) -> &'static str {
    match basis {
        Some("relationship-and-permission") => "Involved in your care, with permission given",
        Some("legal-basis") => "Involved in your care (shared for direct care without asking)",
        Some("emergency") => {
            "Emergency access (you could not be asked); reviewed by a privacy officer"
        }
        Some("objection-overridden") => {
            "Your opt-out was overridden (safeguarding or a legal duty)"
        }
        _ => "Direct care",
    }
}

fn csv_field(s: &str) -> String {
    // Quote everything; a leading =, +, - or @ would be read as a formula by spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl AccessHistory {
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("time,organisation,organisation_code,role,reason,explanation\r\n");
        for v in &self.views {
            let fields = [
                v.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                v.organisation.clone(),
                v.org_code.clone(),
                v.role.clone(),
                v.reason.clone(),
                v.explanation.clone(),
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push_str("\r\n");
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The history as a file for the patient to keep.
    pub fn download(&self, format: DownloadFormat) -> Download {
        let stem = format!("my-care-record-access-{}", self.until.format("%Y-%m-%d"));
        match format {
            DownloadFormat::Csv => Download {
                content_type: "text/csv; charset=utf-8",
                filename: format!("{stem}.csv"),
                body: self.to_csv(),
            },
            DownloadFormat::Json => Download {
                content_type: "application/json",
                filename: format!("{stem}.json"),
                body: self.to_json(),
            },
        }
    }
}

impl Gateway {
    /// Every view of this patient's record since `since` (at most the last 12 months), for the
    /// patient themself once signed in. Audited as the patient reading their own history.
    pub async fn access_history(
        &self,
        nhs: &NhsNumber,
        since: Option<DateTime<Utc>>,
    ) -> Result<AccessHistory, GatewayError> {
        let until = self.clock.now();
        let earliest = until - Duration::days(HISTORY_DAYS);
        let since = since.map_or(earliest, |s| s.max(earliest));
        self.known_patient(nhs).await?;
        let rows = self
            .query(&AuditQuery {
                patient: Some(nhs.as_str().to_owned()),
                actions: vec![VIEW_ACTION.into()],
                outcomes: vec!["permit".into()],
                from: Some(since),
                to: Some(until),
                limit: mcr_store::AUDIT_QUERY_MAX,
                ..AuditQuery::default()
            })
            .await?;
        let views = rows
            .iter()
            .map(entry)
            .map(|e| {
                e.map(|e| {
                    let ev = e.event;
                    AccessLine {
                        at: ev.at,
                        organisation: ev.org_name,
                        org_code: ev.org_code,
                        role: ev
                            .role
                            .parse::<Role>()
                            .map_or(ev.role.clone(), |r| r.label().to_owned()),
                        reason: reason_words(ev.basis.as_deref()).to_owned(),
                        explanation: ev.detail.unwrap_or_default(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let event = AuditEvent {
            at: until,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            system: None,
            user_id: "patient".into(),
            user_name: "the patient".into(),
            role: "patient".into(),
            org_code: "PUBLIC".into(),
            org_name: "My Care Record public site".into(),
            patient: Some(nhs.as_str().to_owned()),
            purpose: "patient-request".into(),
            action: "read-access-history".into(),
            outcome: "permit".into(),
            basis: None,
            detail: Some(format!("{} view(s) listed", views.len())),
            sources: Vec::new(),
            role_profile_id: None,
        };
        self.audit(&event).await?;
        Ok(AccessHistory {
            nhs_number: nhs.as_str().to_owned(),
            since,
            until,
            views,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The privacy officer's review queue.

/// What a privacy officer decided about an emergency access or a self-claimed relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewOutcome {
    Appropriate,
    ReferredForInvestigation,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Appropriate => "appropriate",
            Self::ReferredForInvestigation => "referred-for-investigation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "appropriate" => Some(Self::Appropriate),
            "referred-for-investigation" => Some(Self::ReferredForInvestigation),
            _ => None,
        }
    }
}

/// The review queue's search: every field narrows.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub user_id: Option<String>,
    pub patient: Option<NhsNumber>,
    /// The acting user's organisation.
    pub org_code: Option<String>,
    /// Default: the last 30 days.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Also list cases already reviewed.
    pub include_reviewed: bool,
}

/// Something unusual about a user's accesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "flag", rename_all = "kebab-case")]
pub enum AnomalyFlag {
    /// Within one hour from `from`, the user reached `patients` patients without an existing
    /// care relationship (emergency access or self-claimed relationships).
    ManyPatientsWithoutRelationship {
        from: DateTime<Utc>,
        patients: usize,
    },
    /// The user viewed a patient who shares their surname.
    SameSurname { patient: String },
}

impl AnomalyFlag {
    pub fn describe(&self) -> String {
        match self {
            Self::ManyPatientsWithoutRelationship { from, patients } => format!(
                "Reached {patients} patients without a care relationship within an hour from {}",
                from.format("%-d %B %Y %H:%M")
            ),
            Self::SameSurname { .. } => {
                "Viewed a patient with the same surname as their own".into()
            }
        }
    }
}

/// A user flagged in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub user_id: String,
    pub user_name: String,
    pub org_code: String,
    pub org_name: String,
    pub flag: AnomalyFlag,
    /// Audit records that show it (at most 50).
    pub seqs: Vec<i64>,
}

/// A review already recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub by_user_id: String,
    pub by_name: String,
    pub outcome: String,
    pub note: String,
}

/// A view that followed the access under review.
#[derive(Debug, Clone, Serialize)]
pub struct FollowingView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub basis: Option<String>,
}

/// One case: an emergency access or a self-claimed relationship, and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub seq: i64,
    /// One of [`REVIEWABLE`].
    pub kind: String,
    /// The audited outcome (`deny` for a refused attempt).
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub user_name: String,
    pub role: String,
    pub org_code: String,
    pub org_name: String,
    pub patient: Option<String>,
    /// The emergency reason code, if any.
    pub reason_code: Option<String>,
    /// The reason the user gave.
    pub reason: Option<String>,
    pub correlation_id: String,
    /// The user's views of the patient in the 24 hours after (at most 50).
    pub views_after: Vec<FollowingView>,
    pub reviews: Vec<Review>,
    pub flags: Vec<AnomalyFlag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewQueue {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub items: Vec<ReviewItem>,
    pub anomalies: Vec<Anomaly>,
    /// More cases or views exist than were read; narrow the search.
    pub truncated: bool,
}

const QUEUE_MAX: u32 = 500;
const VIEWS_SCANNED_MAX: u32 = 50_000;

/// The last word of a person's name, normalised as the index normalises family names.
fn surname(name: &str) -> String {
    name.split_whitespace()
        .last()
        .map(mcr_domain::demographics::normalise_name)
        .unwrap_or_default()
}

/// Users who reached more than `limit` distinct patients within any hour, from their
/// alerts (oldest first per user): (user, window start, patients, seqs).
fn many_patients(
    alerts: &[AuditEntry],
    limit: usize,
) -> Vec<(String, DateTime<Utc>, usize, Vec<i64>)> {
    let mut by_user: BTreeMap<&str, Vec<&AuditEntry>> = BTreeMap::new();
    for a in alerts {
        by_user.entry(a.event.user_id.as_str()).or_default().push(a);
    }
    let mut out = Vec::new();
    for (user, mut list) in by_user {
        list.sort_by_key(|a| (a.event.at, a.seq));
        let mut best: Option<(DateTime<Utc>, usize, Vec<i64>)> = None;
        let mut start = 0;
        for end in 0..list.len() {
            while list[end].event.at - list[start].event.at > Duration::hours(1) {
                start += 1;
            }
            let window = &list[start..=end];
            let patients: BTreeSet<_> = window
                .iter()
                .filter_map(|a| a.event.patient.as_deref())
                .collect();
            if patients.len() > limit && best.as_ref().is_none_or(|b| patients.len() > b.1) {
                best = Some((
                    list[start].event.at,
                    patients.len(),
                    window.iter().map(|a| a.seq).take(50).collect(),
                ));
            }
        }
        if let Some((from, n, seqs)) = best {
            out.push((user.to_owned(), from, n, seqs));
        }
    }
    out
}

impl Gateway {
    fn must_be_privacy_officer(&self, ctx: &RequestContext) -> Result<(), String> {
        if self.is_privacy_officer(ctx) {
            Ok(())
        } else {
            Err("Only privacy officers of member organisations can review accesses.".into())
        }
    }

    /// The review queue: emergency accesses and self-claimed relationships in the period (not
    /// yet reviewed, unless asked), each with the user's views that followed and any reviews,
    /// and the users flagged by the anomaly checks. Privacy officers only; audited.
    pub async fn review_queue(
        &self,
        ctx: &RequestContext,
        filter: &ReviewFilter,
    ) -> Result<ReviewQueue, GatewayError> {
        const ACTION: &str = "read-review-queue";
        let patient = filter.patient.as_ref().map(NhsNumber::as_str);
        if let Err(why) = self.must_be_privacy_officer(ctx) {
            return Err(self.refuse(ctx, ACTION, patient, &why).await);
        }
        let now = self.clock.now();
        let (from, to) = period(
            filter
                .from
                .or(Some(filter.to.unwrap_or(now) - Duration::days(30))),
            filter.to,
            now,
        )?;
        if let Some(nhs) = &filter.patient {
            self.known_patient(nhs).await?;
        }
        let narrowed = AuditQuery {
            patient: patient.map(str::to_owned),
            user_id: filter.user_id.clone(),
            org_code: filter.org_code.clone(),
            actions: REVIEWABLE.map(str::to_owned).to_vec(),
            from: Some(from),
            to: Some(to),
            limit: QUEUE_MAX,
            ..AuditQuery::default()
        };
        let alerts: Vec<AuditEntry> = self
            .query(&narrowed)
            .await?
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()?;
        let mut truncated = alerts.len() >= QUEUE_MAX as usize;

        // Reviews are recorded after the case, so those since `from` are enough.
        let review_rows = self
            .query(&AuditQuery {
                actions: vec![REVIEW_ACTION.into()],
                from: Some(from),
                limit: mcr_store::AUDIT_QUERY_MAX,
                ..AuditQuery::default()
            })
            .await?;
        let mut reviews: HashMap<i64, Vec<Review>> = HashMap::new();
        for r in review_rows.iter().map(entry) {
            let r = r?;
            if let Some(of) = r.event.basis.as_deref().and_then(|b| b.parse::<i64>().ok()) {
                reviews.entry(of).or_default().push(Review {
                    seq: r.seq,
                    at: r.event.at,
                    by_user_id: r.event.user_id,
                    by_name: r.event.user_name,
                    outcome: r.event.outcome,
                    note: r.event.detail.unwrap_or_default(),
                });
            }
        }

        // Anomalies over everyone in the period (not only the narrowed cases).
        let all_alerts: Vec<AuditEntry> = self
            .query(&AuditQuery {
                actions: REVIEWABLE.map(str::to_owned).to_vec(),
                from: Some(from),
                to: Some(to),
                limit: VIEWS_SCANNED_MAX,
                ..AuditQuery::default()
            })
            .await?
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()?;
        let mut anomalies = Vec::new();
        let names: HashMap<&str, &AuditEvent> = all_alerts
            .iter()
            .map(|a| (a.event.user_id.as_str(), &a.event))
            .collect();
        for (user, start, n, seqs) in
            many_patients(&all_alerts, self.audit_config.many_patients_per_hour)
        {
            if let Some(ev) = names.get(user.as_str()) {
                anomalies.push(Anomaly {
                    user_id: user.clone(),
                    user_name: ev.user_name.clone(),
                    org_code: ev.org_code.clone(),
                    org_name: ev.org_name.clone(),
                    flag: AnomalyFlag::ManyPatientsWithoutRelationship {
                        from: start,
                        patients: n,
                    },
                    seqs,
                });
            }
        }
        let views = self
            .query(&AuditQuery {
                actions: vec![VIEW_ACTION.into()],
                outcomes: vec!["permit".into()],
                user_id: filter.user_id.clone(),
                org_code: filter.org_code.clone(),
                patient: patient.map(str::to_owned),
                from: Some(from),
                to: Some(to),
                limit: VIEWS_SCANNED_MAX,
                ..AuditQuery::default()
            })
            .await?;
        truncated |= views.len() >= VIEWS_SCANNED_MAX as usize;
        let mut family: HashMap<String, Option<String>> = HashMap::new();
        let mut same: BTreeMap<(String, String), Anomaly> = BTreeMap::new();
        for v in &views {
            let (Some(nhs), Ok(ev)) = (
                v.record.patient.as_deref(),
                serde_json::from_str::<AuditEvent>(&v.record.payload),
            ) else {
                continue;
            };
            let own = surname(&ev.user_name);
            if own.is_empty() {
                continue;
            }
            if !family.contains_key(nhs) {
                let f = match NhsNumber::parse(nhs) {
                    Ok(n) => self
                        .store
                        .patient(&n)
                        .await
                        .map_err(|_| GatewayError::StoreUnavailable)?
                        .map(|p| mcr_domain::demographics::normalise_name(&p.family)),
                    Err(_) => None,
                };
                family.insert(nhs.to_owned(), f);
            }
            if family.get(nhs).and_then(Option::as_deref) == Some(own.as_str()) {
                let a = same
                    .entry((ev.user_id.clone(), nhs.to_owned()))
                    .or_insert_with(|| Anomaly {
                        user_id: ev.user_id.clone(),
                        user_name: ev.user_name.clone(),
                        org_code: ev.org_code.clone(),
                        org_name: ev.org_name.clone(),
                        flag: AnomalyFlag::SameSurname {
                            patient: nhs.to_owned(),
                        },
                        seqs: Vec::new(),
                    });
                if a.seqs.len() < 50 {
                    a.seqs.push(v.seq);
                }
            }
        }
        anomalies.extend(same.into_values());

        let mut items = Vec::new();
        for a in alerts {
            let done = reviews.remove(&a.seq).unwrap_or_default();
            if !done.is_empty() && !filter.include_reviewed {
                continue;
            }
            let ev = a.event;
            let views_after = match &ev.patient {
                Some(p) => self
                    .query(&AuditQuery {
                        user_id: Some(ev.user_id.clone()),
                        patient: Some(p.clone()),
                        actions: vec![VIEW_ACTION.into()],
                        from: Some(ev.at),
                        to: Some(ev.at + Duration::hours(24)),
                        limit: 50,
                        ..AuditQuery::default()
                    })
                    .await?
                    .iter()
                    .map(entry)
                    .map(|v| {
                        v.map(|v| FollowingView {
                            seq: v.seq,
                            at: v.event.at,
                            outcome: v.event.outcome,
                            basis: v.event.basis,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let flags = anomalies
                .iter()
                .filter(|x| x.user_id == ev.user_id)
                .filter(|x| match &x.flag {
                    AnomalyFlag::SameSurname { patient } => ev.patient.as_ref() == Some(patient),
                    AnomalyFlag::ManyPatientsWithoutRelationship { .. } => true,
                })
                .map(|x| x.flag.clone())
                .collect();
            items.push(ReviewItem {
                seq: a.seq,
                kind: ev.action,
                outcome: ev.outcome,
                at: ev.at,
                user_id: ev.user_id,
                user_name: ev.user_name,
                role: ev.role,
                org_code: ev.org_code,
                org_name: ev.org_name,
                patient: ev.patient,
                reason_code: ev.basis,
                reason: ev.detail,
                correlation_id: ev.correlation_id,
                views_after,
                reviews: done,
                flags,
            });
        }

        let mut event = self.event(ctx, ACTION, patient);
        event.outcome = "permit".into();
        event.detail = Some(format!(
            "{} case(s), {} anomaly flag(s)",
            items.len(),
            anomalies.len()
        ));
        self.audit(&event).await?;
        Ok(ReviewQueue {
            from,
            to,
            items,
            anomalies,
            truncated,
        })
    }

    /// Record a privacy officer's outcome for the emergency access or self-claimed relationship
    /// audited as record `seq`. The review is itself an audit record (`review-access`, its
    /// basis the reviewed record's number); returns its number.
    pub async fn record_review(
        &self,
        ctx: &RequestContext,
        seq: i64,
        outcome: ReviewOutcome,
        note: &str,
    ) -> Result<i64, GatewayError> {
        if let Err(why) = self.must_be_privacy_officer(ctx) {
            return Err(self.refuse(ctx, REVIEW_ACTION, None, &why).await);
        }
        let note = clean_text(note, "note on the review", 2_000)?;
        let rows = self
            .store
            .audit_rows(seq.saturating_sub(1), 1)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let Some(row) = rows
            .into_iter()
            .next()
            .filter(|r| r.seq == seq && REVIEWABLE.contains(&r.record.action.as_str()))
        else {
            return Err(GatewayError::Invalid(format!(
                "Audit record {seq} is not an access or governance change that is reviewed (emergency access, a self-claimed relationship, permission on the patient's behalf, or an objection override or lift), so it cannot be reviewed."
            )));
        };
        let mut event = self.event(ctx, REVIEW_ACTION, row.record.patient.as_deref());
        event.outcome = outcome.as_str().into();
        event.basis = Some(seq.to_string());
        event.detail = Some(note);
        Ok(self.audit(&event).await?.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(seq: i64, user: &str, patient: &str, minute: i64) -> AuditEntry {
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        AuditEntry {
            seq,
            event: AuditEvent {
                at: t0 + Duration::minutes(minute),
                correlation_id: String::new(),
                system: None,
                user_id: user.into(),
                user_name: "Dr Test User".into(),
                role: "clinician".into(),
                org_code: "RWH".into(),
                org_name: "Trust".into(),
                patient: Some(patient.into()),
                purpose: "directcare".into(),
                action: "emergency-access".into(),
                outcome: "alert".into(),
                basis: None,
                detail: None,
                sources: Vec::new(),
                role_profile_id: None,
            },
        }
    }

    #[test]
    fn many_patients_in_an_hour_is_flagged_only_above_the_limit() {
        let within: Vec<_> = (0..21)
            .map(|i| alert(i, "u1", &format!("p{i}"), i))
            .collect();
        let flagged = many_patients(&within, 20);
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].2, 21);
        // The same 21 spread over two hours: never more than 20 in one hour.
        let spread: Vec<_> = (0..21)
            .map(|i| alert(i, "u1", &format!("p{i}"), i * 6))
            .collect();
        assert!(many_patients(&spread, 20).is_empty());
        // One patient many times is one patient.
        let same: Vec<_> = (0..30).map(|i| alert(i, "u1", "p1", i)).collect();
        assert!(many_patients(&same, 20).is_empty());
    }

    #[test]
    fn surnames_compare_normalised() {
        assert_eq!(surname("Dr Asha Patel"), "PATEL");
        assert_eq!(
            surname("Siobhan O'Murphy"),
            mcr_domain::demographics::normalise_name("O'Murphy")
        );
    }

    #[test]
    fn periods_wider_than_a_year_are_refused() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(period(Some(now - Duration::days(400)), Some(now), now).is_err());
        assert!(period(Some(now), Some(now - Duration::days(1)), now).is_err());
        let (from, to) = period(None, None, now).expect("default");
        assert_eq!((to - from).num_days(), HISTORY_DAYS);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let h = AccessHistory {
            nhs_number: "9990000018".into(),
            since: now,
            until: now,
            views: vec![AccessLine {
                at: now,
                organisation: "=HYPERLINK(\"x\")".into(),
                org_code: "RWH".into(),
                role: "Doctor".into(),
                reason: "Direct care".into(),
                explanation: "a, \"b\"".into(),
            }],
        };
        let csv = h.to_csv();
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
        assert!(csv.contains("\"a, \"\"b\"\"\""), "{csv}");
    }
}
