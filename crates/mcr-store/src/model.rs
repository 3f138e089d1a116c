use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use serde::{Deserialize, Serialize};

/// A patient as the index knows them: demographics only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPatient {
    pub nhs_number: NhsNumber,
    pub family: String,
    /// Given names, space separated.
    pub given: String,
    pub birth_date: NaiveDate,
    /// FHIR administrative gender: male, female, other, unknown.
    pub gender: Option<String>,
    pub postcode: Option<String>,
    /// The address's first line, normalised (`12A HIGH ST`), for matching only: never shown.
    /// `None` when unknown or the source labels the patient restricted.
    pub address: Option<String>,
    /// ODS code of the registered GP practice.
    pub gp_practice: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// How a source record was tied to an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkMethod {
    /// The source record carries the NHS number.
    NhsNumber,
    /// The source record has no NHS number; name, date of birth and postcode matched exactly
    /// one indexed patient.
    Demographics,
    /// The source record has no NHS number; the Personal Demographics Service traced it to a
    /// unique patient at or above the configured score.
    PdsTrace,
    /// The record a local identity was made from (no NHS number, matched nobody): linked to
    /// that local identity only, never written to `source_link` under this method.
    LocalIdentity,
}

impl LinkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMethod::NhsNumber => "nhs-number",
            LinkMethod::Demographics => "demographics",
            LinkMethod::PdsTrace => "pds-trace",
            LinkMethod::LocalIdentity => "local-identity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nhs-number" => Some(LinkMethod::NhsNumber),
            "demographics" => Some(LinkMethod::Demographics),
            "pds-trace" => Some(LinkMethod::PdsTrace),
            "local-identity" => Some(LinkMethod::LocalIdentity),
            _ => None,
        }
    }
}

/// One source's record of one patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLink {
    pub nhs_number: NhsNumber,
    pub source: SourceId,
    /// The source's own `Patient.id`.
    pub local_id: String,
    pub method: LinkMethod,
    /// Demographics as this source holds them, to warn when sources disagree.
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub linked_at: DateTime<Utc>,
}

/// A source patient that could not be linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedRecord {
    pub source: SourceId,
    pub local_id: String,
    /// `no-match`, `ambiguous` (more than one indexed patient matched), `review` (a pair
    /// waits for a person), or one of [`UNREADABLE_REASONS`]: the record could not be read.
    pub reason: String,
    /// How many candidates matched (0 for no-match).
    pub candidates: u32,
    pub seen_at: DateTime<Utc>,
}

/// Why a source record could not be read, and so is in no one's record until its source
/// corrects it: no birth date; a birth date that is not a whole date (`1945-04`, `1945-04-93`);
/// no name (neither family nor given).
pub const UNREADABLE_REASONS: [&str; 3] = ["no-birth-date", "birth-date-unreadable", "no-name"];

/// The most records that could not be read one listing returns.
pub const UNREADABLE_LIST_MAX: u32 = 500;

/// A demographic search. `family` is required; the others narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemographicQuery {
    pub family: String,
    pub given: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<String>,
}

/// What is appended to the audit trail. The indexed columns are copied out of the payload so
/// the trail can be searched; the hash covers all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAppend {
    pub at: DateTime<Utc>,
    pub correlation_id: String,
    pub user_id: String,
    pub org_code: String,
    /// NHS number of the patient concerned, if any.
    pub patient: Option<String>,
    /// e.g. `view-record`, `search-patient`, `record-permission`.
    pub action: String,
    /// e.g. `permit`, `deny`, `needs-permission`, `error`.
    pub outcome: String,
    /// The whole record as canonical JSON (see the audit crate).
    pub payload: String,
    /// The CIS2 role profile (`person_roleid`) the user was working in, when there is one.
    #[serde(default)]
    pub role_profile_id: Option<String>,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub record: AuditAppend,
}

/// Audit search; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub patient: Option<String>,
    pub user_id: Option<String>,
    pub org_code: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// A permission-to-view decision recorded by a member of staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRow {
    pub nhs_number: NhsNumber,
    pub org_code: String,
    pub user_id: String,
    /// `given` or `refused`.
    pub decision: String,
    /// `patient`, `representative` or `best-interests`.
    pub given_by: String,
    pub at: DateTime<Utc>,
    /// For an answer given on the patient's behalf: the coded reason (e.g.
    /// `lasting-power-of-attorney`, `lacks-capacity`) and the recorder's words.
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
}

/// A care relationship recorded in the gateway (recorded by an administrator, or self-claimed
/// by a user with a reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipRow {
    pub nhs_number: NhsNumber,
    pub org_code: String,
    /// `recorded` or `self-claimed` (and the derived kinds when cached).
    pub kind: String,
    /// For a self-claim: the user it is for.
    pub user_id: Option<String>,
    pub reason: Option<String>,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub recorded_by: String,
}

/// One event in a patient's objection history: `active` (opted out), `withdrawn` (opted back
/// in) or `overridden`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectionRow {
    pub nhs_number: NhsNumber,
    pub state: String,
    /// Who recorded it (user id).
    pub recorded_by: String,
    /// On whose word: `patient`, `representative`, `opt-out-request:REF`, …
    pub on_whose_word: String,
    /// For an override: `safeguarding` or `legal-obligation`.
    pub override_reason: Option<String>,
    pub by_role: Option<String>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
    /// For an override: when it runs out.
    pub ends_at: Option<DateTime<Utc>>,
}

/// An emergency (break-glass) access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyRow {
    pub nhs_number: NhsNumber,
    pub user_id: String,
    pub org_code: String,
    pub reason_code: String,
    pub reason_text: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum GovernanceChange {
    Permission(PermissionRow),
    Relationship(RelationshipRow),
    Objection(ObjectionRow),
    Emergency(EmergencyRow),
    /// A care event from a feed, inserted or replaced by its source key (one transaction with
    /// its audit record: one commit per message).
    CareEvent(crate::CareEventRow),
}

/// A patient's governance records, each list oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceRecords {
    pub permissions: Vec<PermissionRow>,
    pub relationships: Vec<RelationshipRow>,
    pub objections: Vec<ObjectionRow>,
    pub emergencies: Vec<EmergencyRow>,
    /// Care events (tag 7), by start: when the patient's care at each organisation started
    /// and ended.
    pub care_events: Vec<crate::CareEventRow>,
}

/// What a record view reads before deciding: the patient as the index has them, the sources
/// holding them (by source, then local id), their governance records, whether they are
/// restricted, and the matching queue's pairs naming them. Read as one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewInputs {
    pub patient: Option<IndexedPatient>,
    pub links: Vec<SourceLink>,
    pub governance: GovernanceRecords,
    /// What PDS (or a source's label) says: the patient is restricted (`patient_status`).
    pub restricted: bool,
    /// Pairs in the matching queue that name this NHS number, by source, then local id.
    pub match_candidates: Vec<crate::MatchCandidateRow>,
}
