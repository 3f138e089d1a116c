//! What the policy decides from: plain values the gateway loads from the store and the sources.

use chrono::{DateTime, Duration, Utc};
use mcr_domain::{NhsNumber, OdsCode, Principal, Purpose, Role};
use serde::{Deserialize, Serialize};

/// Why someone is "directly involved" in a patient's care, strongest first. Every kind but
/// `Recorded` and `SelfClaimed` comes from a care event with its times (an ADT message, FHIR
/// care-event metadata, a GP registration); being held in an organisation's system is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationshipKind {
    /// The patient is registered with the GP practice; ends at deregistration.
    GpRegistration,
    /// An open encounter or admission at the organisation.
    OpenEncounter,
    /// An open episode of care: on a community or mental health service's caseload.
    OpenEpisode,
    /// A social care case allocated at the organisation, until the allocation ends.
    CaseAllocation,
    /// An active referral to the organisation, until it is closed.
    Referral,
    /// An appointment booked at the organisation; counts from the configured days before it
    /// until it ends.
    UpcomingAppointment,
    /// A discharge; counts for the organisation kind's window after it.
    RecentDischarge,
    /// A finished encounter or episode; counts for the organisation kind's window after it
    /// ended.
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
            RelationshipKind::OpenEpisode => "open-episode",
            RelationshipKind::CaseAllocation => "case-allocation",
            RelationshipKind::Referral => "referral",
            RelationshipKind::UpcomingAppointment => "upcoming-appointment",
            RelationshipKind::RecentDischarge => "recent-discharge",
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
            RelationshipKind::OpenEpisode => "the patient is on a caseload here",
            RelationshipKind::CaseAllocation => "the patient has a social care case allocated here",
            RelationshipKind::Referral => "the patient has been referred here",
            RelationshipKind::UpcomingAppointment => "the patient has an appointment here soon",
            RelationshipKind::RecentDischarge => "the patient was discharged from here recently",
            RelationshipKind::RecentEncounter => "the patient was seen here recently",
            RelationshipKind::Recorded => "a care relationship was recorded for this organisation",
            RelationshipKind::SelfClaimed => {
                "the member of staff said they are caring for the patient"
            }
        }
    }
}

/// How long relationships that end by time count, for one organisation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationshipWindows {
    /// A finished encounter or a discharge counts for this many days after it.
    pub recent_days: u32,
    /// An appointment counts from this many days before it.
    pub ahead_days: u32,
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%-d %b %Y").to_string()
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
            RelationshipKind::RecentEncounter | RelationshipKind::RecentDischarge => {
                Some(crate::time::after(
                    self.end.unwrap_or(self.start),
                    Duration::days(i64::from(recent_days)),
                ))
            }
            RelationshipKind::UpcomingAppointment => Some(self.end.unwrap_or(self.start)),
            _ => self.end,
        }
    }

    /// When this relationship starts counting: an appointment `ahead_days` before it, any
    /// other at its start.
    pub fn counts_from(&self, ahead_days: u32) -> DateTime<Utc> {
        match self.kind {
            RelationshipKind::UpcomingAppointment => self
                .start
                .checked_sub_signed(Duration::days(i64::from(ahead_days)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            _ => self.start,
        }
    }

    /// True when the relationship counts for `user_id` at `org` at `now`. A relationship that
    /// ends before it starts never counts; a self-claim counts only for the user who made it.
    pub fn counts_for(
        &self,
        org: &OdsCode,
        user_id: &str,
        now: DateTime<Utc>,
        windows: RelationshipWindows,
    ) -> bool {
        if &self.org_code != org || self.counts_from(windows.ahead_days) > now {
            return false;
        }
        if matches!(self.end, Some(end) if end < self.start) {
            return false;
        }
        if self.kind == RelationshipKind::SelfClaimed && self.user_id.as_deref() != Some(user_id) {
            return false;
        }
        match self.valid_until(windows.recent_days) {
            Some(until) => now < until,
            None => true,
        }
    }

    /// The event in words with its date, for `explain`: "admitted on 30 Nov 2026",
    /// "discharged 2 Nov 2026, within 90 days".
    pub fn event_words(&self, recent_days: u32) -> String {
        let start = day(self.start);
        let ended = day(self.end.unwrap_or(self.start));
        match self.kind {
            RelationshipKind::GpRegistration => {
                format!("registered with this practice since {start}")
            }
            RelationshipKind::OpenEncounter => format!("admitted on {start}"),
            RelationshipKind::OpenEpisode => {
                format!("on this organisation's caseload since {start}")
            }
            RelationshipKind::CaseAllocation => format!("social care case allocated on {start}"),
            RelationshipKind::Referral => format!("referred on {start}"),
            RelationshipKind::UpcomingAppointment => format!("appointment on {start}"),
            RelationshipKind::RecentDischarge => {
                format!("discharged {ended}, within {recent_days} days")
            }
            RelationshipKind::RecentEncounter => {
                format!("seen on {ended}, within {recent_days} days")
            }
            RelationshipKind::Recorded => format!("recorded on {start}"),
            RelationshipKind::SelfClaimed => format!("claimed on {start}"),
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
    /// The patient is restricted (S-flagged by PDS, or labelled R/V by a source): only the
    /// roles the region names (`restricted_roles`) may view, or emergency access.
    pub restricted: bool,
}
