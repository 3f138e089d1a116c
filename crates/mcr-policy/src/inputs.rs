//! What the policy decides from: plain values the gateway loads from the store and the sources.

use chrono::{DateTime, Duration, Utc};
use mcr_domain::{NhsNumber, OdsCode, Principal, Purpose, Role};
use serde::{Deserialize, Serialize};

/// Why someone is "directly involved" in a patient's care, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationshipKind {
    /// The patient is registered with the GP practice.
    GpRegistration,
    /// An open encounter or admission at the organisation.
    OpenEncounter,
    /// A social care case allocated at the organisation.
    CaseAllocation,
    /// A referral to the organisation.
    Referral,
    /// A finished encounter; counts for `relationship_recent_days` after it ended.
    RecentEncounter,
    /// Recorded in the gateway by a member of staff, with an end date.
    Recorded,
    /// Claimed by one user with a reason; counts for that user only and raises an alert.
    SelfClaimed,
}

impl RelationshipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::GpRegistration => "gp-registration",
            RelationshipKind::OpenEncounter => "open-encounter",
            RelationshipKind::CaseAllocation => "case-allocation",
            RelationshipKind::Referral => "referral",
            RelationshipKind::RecentEncounter => "recent-encounter",
            RelationshipKind::Recorded => "recorded",
            RelationshipKind::SelfClaimed => "self-claimed",
        }
    }

    /// Words for a patient: "… because you were registered with the practice".
    pub fn describe(self) -> &'static str {
        match self {
            RelationshipKind::GpRegistration => "the patient is registered with this GP practice",
            RelationshipKind::OpenEncounter => {
                "the patient is currently being seen or is admitted here"
            }
            RelationshipKind::CaseAllocation => "the patient has a social care case allocated here",
            RelationshipKind::Referral => "the patient has been referred here",
            RelationshipKind::RecentEncounter => "the patient was seen here recently",
            RelationshipKind::Recorded => "a care relationship was recorded for this organisation",
            RelationshipKind::SelfClaimed => {
                "the member of staff said they are caring for the patient"
            }
        }
    }
}

/// A care relationship between the patient and an organisation (or, when self-claimed, one user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    pub org_code: OdsCode,
    pub kind: RelationshipKind,
    /// True when read from what the sources say; false when recorded in the gateway.
    pub derived: bool,
    pub start: DateTime<Utc>,
    /// For [`RelationshipKind::RecentEncounter`], when the encounter ended; otherwise when the
    /// relationship ends. `None`: open.
    pub end: Option<DateTime<Utc>>,
    /// For a self-claimed relationship: the user who claimed it.
    pub user_id: Option<String>,
}

impl Relationship {
    /// When this relationship stops counting, given the recent-encounter window.
    /// `None`: open-ended.
    pub fn valid_until(&self, recent_days: u32) -> Option<DateTime<Utc>> {
        match self.kind {
            RelationshipKind::RecentEncounter => Some(crate::time::after(
                self.end.unwrap_or(self.start),
                Duration::days(i64::from(recent_days)),
            )),
            _ => self.end,
        }
    }

    /// True when the relationship counts for `user_id` at `org` at `now`. A relationship that
    /// ends before it starts never counts; a self-claim counts only for the user who made it.
    pub fn counts_for(
        &self,
        org: &OdsCode,
        user_id: &str,
        now: DateTime<Utc>,
        recent_days: u32,
    ) -> bool {
        if &self.org_code != org || self.start > now {
            return false;
        }
        if matches!(self.end, Some(end) if end < self.start) {
            return false;
        }
        if self.kind == RelationshipKind::SelfClaimed && self.user_id.as_deref() != Some(user_id) {
            return false;
        }
        match self.valid_until(recent_days) {
            Some(until) => now < until,
            None => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionDecision {
    Given,
    Refused,
}

/// Who answered when permission was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionGiver {
    /// The patient, verbally.
    Patient,
    /// A representative (parent, lasting power of attorney, carer).
    Representative,
    /// The patient lacks capacity: a best-interests decision by the clinician.
    BestInterests,
}

impl PermissionGiver {
    pub fn describe(self) -> &'static str {
        match self {
            PermissionGiver::Patient => "the patient",
            PermissionGiver::Representative => "the patient's representative",
            PermissionGiver::BestInterests => "the clinician, in the patient's best interests",
        }
    }
}

/// The answer when permission to view was asked, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRecord {
    pub org_code: OdsCode,
    /// Who asked and recorded the answer.
    pub user_id: String,
    pub decision: PermissionDecision,
    pub given_by: PermissionGiver,
    pub at: DateTime<Utc>,
}

/// Why an objection was overridden. Only these grounds exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrideReason {
    Safeguarding,
    LegalObligation,
}

impl OverrideReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideReason::Safeguarding => "safeguarding",
            OverrideReason::LegalObligation => "legal-obligation",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            OverrideReason::Safeguarding => "to keep someone safe from harm (safeguarding)",
            OverrideReason::LegalObligation => "because the law requires it",
        }
    }
}

/// The patient's entry in the objection (opt-out) register, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ObjectionState {
    /// The patient has opted out: nothing is shared.
    Active { recorded_at: DateTime<Utc> },
    /// The patient opted back in.
    Withdrawn { at: DateTime<Utc> },
    /// The objection stands but was overridden by a designated role, from `at` until `until`
    /// (an override always runs out; once it has, the objection applies again).
    Overridden {
        reason: OverrideReason,
        by_role: Role,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// The reasons from which emergency (break-glass) access is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmergencyReason {
    /// The patient is unconscious.
    Unconscious,
    /// The patient lacks capacity and care is urgent.
    LacksCapacityUrgent,
    /// Life-threatening emergency, no time to ask.
    LifeThreatening,
    /// The patient cannot communicate and no representative is available.
    CannotCommunicate,
}

impl EmergencyReason {
    pub const ALL: [EmergencyReason; 4] = [
        EmergencyReason::Unconscious,
        EmergencyReason::LacksCapacityUrgent,
        EmergencyReason::LifeThreatening,
        EmergencyReason::CannotCommunicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyReason::Unconscious => "unconscious",
            EmergencyReason::LacksCapacityUrgent => "lacks-capacity-urgent",
            EmergencyReason::LifeThreatening => "life-threatening",
            EmergencyReason::CannotCommunicate => "cannot-communicate",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            EmergencyReason::Unconscious => "the patient was unconscious",
            EmergencyReason::LacksCapacityUrgent => {
                "the patient could not decide and care was urgent"
            }
            EmergencyReason::LifeThreatening => "the patient's life was in danger",
            EmergencyReason::CannotCommunicate => {
                "the patient could not communicate and nobody could answer for them"
            }
        }
    }
}

impl std::str::FromStr for EmergencyReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmergencyReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown emergency reason `{s}`"))
    }
}

/// Emergency access started by one user for this patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyAccess {
    pub user_id: String,
    pub reason: EmergencyReason,
    pub started_at: DateTime<Utc>,
}

/// Everything one decision is made from. Borrowed, so deciding allocates nothing it need not.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    pub principal: &'a Principal,
    pub patient: &'a NhsNumber,
    pub purpose: Purpose,
    pub now: DateTime<Utc>,
    /// The patient's relationships (any organisation; the policy picks the user's).
    pub relationships: &'a [Relationship],
    /// The patient's permission records (any organisation, any order).
    pub permissions: &'a [PermissionRecord],
    pub objection: Option<&'a ObjectionState>,
    pub emergency: Option<&'a EmergencyAccess>,
}
