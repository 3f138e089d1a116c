//! The audit trail's words: what was attempted ([`Action`]) and how it ended ([`Outcome`]),
//! one definition of each, with the FHIR R4 `AuditEvent` coding every word carries.
//!
//! Each word keeps the string the trail has always stored (the hash chain covers it, so a
//! word can never be respelled), and reading a stored word back fails loudly on one this
//! build does not know ([`UnknownWord`]): an unknown action is reported, never guessed.
//!
//! The codings follow the IHE Basic Audit Log Patterns (BALP, ITI, v1.1.3,
//! <https://profiles.ihe.net/ITI/BALP/>) over FHIR R4 `AuditEvent`
//! (<https://hl7.org/fhir/R4/auditevent.html>):
//!
//! - `AuditEvent.type`: `rest` from <http://terminology.hl7.org/CodeSystem/audit-event-type>
//!   for the RESTful interactions (BALP's `IHE.BasicAudit.Create`/`Read`/`Update`/`Delete`/
//!   `Query` profiles), and the DICOM audit event ids (DICOM PS3.16 CID 400,
//!   <http://dicom.nema.org/resources/ontology/DCM>) for the rest: `110114` User
//!   Authentication (BALP's `IHE.IUA.71` profile for a token issued), `110100` Application
//!   Activity, `110113` Security Alert;
//! - `AuditEvent.subtype`: a code from <http://hl7.org/fhir/restful-interaction> (`read`,
//!   `create`, `update`, `delete`, `search-type`, `operation`), or DICOM CID 401 (`110120`
//!   Application Start, `110122` Login), or `ITI-71` from `urn:ihe:event-type-code`;
//! - `AuditEvent.action`: value set `audit-event-action`
//!   (<https://hl7.org/fhir/R4/valueset-audit-event-action.html>): C, R, U, D, E;
//! - `AuditEvent.outcome`: value set `audit-event-outcome`
//!   (<https://hl7.org/fhir/R4/valueset-audit-event-outcome.html>): 0 success, 4 minor
//!   failure, 8 serious failure, 12 major failure.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A stored word this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit {kind} `{word}`")]
pub struct UnknownWord {
    /// `action`, `outcome`, `authentication channel` or `refusal kind`.
    pub kind: &'static str,
    pub word: String,
}

/// One code from a code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";

/// `rest`: a RESTful operation (BALP's basic patterns).
pub const REST: Coding = Coding {
    system: "http://terminology.hl7.org/CodeSystem/audit-event-type",
    code: "rest",
    display: "Restful Operation",
};
/// DICOM `110114` User Authentication.
pub const USER_AUTHENTICATION: Coding = Coding {
    system: DCM,
    code: "110114",
    display: "User Authentication",
};
/// DICOM `110100` Application Activity.
pub const APPLICATION_ACTIVITY: Coding = Coding {
    system: DCM,
    code: "110100",
    display: "Application Activity",
};
/// DICOM `110113` Security Alert.
pub const SECURITY_ALERT: Coding = Coding {
    system: DCM,
    code: "110113",
    display: "Security Alert",
};

const fn restful(code: &'static str, display: &'static str) -> Coding {
    Coding {
        system: RESTFUL,
        code,
        display,
    }
}
const READ: Coding = restful("read", "read");
const CREATE: Coding = restful("create", "create");
const UPDATE: Coding = restful("update", "update");
const DELETE: Coding = restful("delete", "delete");
const SEARCH: Coding = restful("search-type", "search type");
const OPERATION: Coding = restful("operation", "operation");
const LOGIN: Coding = Coding {
    system: DCM,
    code: "110122",
    display: "Login",
};
const APPLICATION_START: Coding = Coding {
    system: DCM,
    code: "110120",
    display: "Application Start",
};
const GET_ACCESS_TOKEN: Coding = Coding {
    system: "urn:ihe:event-type-code",
    code: "ITI-71",
    display: "Get Access Token",
};

/// `AuditEvent.action`: what kind of thing was done to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl EventAction {
    /// The code of value set `audit-event-action`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Create => "C",
            Self::Read => "R",
            Self::Update => "U",
            Self::Delete => "D",
            Self::Execute => "E",
        }
    }
}

/// How an action is coded in a FHIR `AuditEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCoding {
    pub event_type: Coding,
    /// The standard subtype, when one fits; our own action word is given beside it by the
    /// renderer.
    pub subtype: Option<Coding>,
    pub action: EventAction,
}

const fn rest(subtype: Coding, action: EventAction) -> EventCoding {
    EventCoding {
        event_type: REST,
        subtype: Some(subtype),
        action,
    }
}

/// Declares a vocabulary: the enum of plain words, its stored strings and its parser, so
/// the word and its string are written once.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word as stored in the trail.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { kind: $what, word: s.to_owned() }),
                }
            }
        }
    };
}

/// Declares [`Action`]: its plain words (stored as they are) beside the two words that carry
/// a parameter, so each word and its string are written once.
macro_rules! actions {
    ($($(#[$vmeta:meta])* $variant:ident = $word:literal,)+) => {
        /// What was attempted. Stored as `view-record`, `authenticate:sign-in`,
        /// `refused:csrf`, …
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$vmeta])* $variant,)+
            /// A sign-in, or a request refused at the door, by the way in
            /// (`authenticate:{channel}`).
            Authenticate(AuthChannel),
            /// Requests refused before the gateway, counted (`refused:{kind}`).
            Refused(RefusalKind),
        }

        impl Action {
            const PLAIN: &'static [Action] = &[$(Action::$variant,)+];

            /// The word as stored in the trail.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $word,)+
                    Action::Authenticate(c) => c.action_word(),
                    Action::Refused(k) => k.action_word(),
                }
            }

            fn plain(s: &str) -> Option<Action> {
                match s {
                    $($word => Some(Action::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

actions! {
    ViewRecord = "view-record",
    /// What each source gave a record page that was sent as its sources answered: written
    /// once every source has answered, after the view's own `view-record` record (which was
    /// committed before the page's first byte).
    ViewRecordAnswered = "view-record-answered",
    ExplainAccess = "explain-access",
    SearchPatient = "search-patient",
    OpenDocument = "open-document",
    ReadConsents = "read-consents",
    RecordPermission = "record-permission",
    RecordPermissionOnBehalf = "record-permission-on-behalf",
    ClaimRelationship = "claim-relationship",
    EmergencyAccess = "emergency-access",
    RecordObjection = "record-objection",
    WithdrawObjection = "withdraw-objection",
    OverrideObjection = "override-objection",
    ProtectPerson = "protect-person",
    UnprotectPerson = "unprotect-person",
    ReadProtectedPersons = "read-protected-persons",
    SearchAudit = "search-audit",
    ReadAccessHistory = "read-access-history",
    ReadReviewQueue = "read-review-queue",
    ReviewAccess = "review-access",
    AnomalyFlag = "anomaly-flag",
    ReadMatchQueue = "read-match-queue",
    MatchLink = "match-link",
    MatchNotAMatch = "match-not-a-match",
    /// Two index persons found to be one: the retired NHS number merged into the survivor.
    MergePatients = "merge-patients",
    /// A merge undone: what it moved goes back.
    UnmergePatients = "unmerge-patients",
    /// The merges of index persons, listed.
    ReadMerges = "read-merges",
    CareEvent = "care-event",
    ListHeldMessages = "list-held-messages",
    PruneCareEvents = "prune-care-events",
    OptOutRequest = "opt-out-request",
    OptInRequest = "opt-in-request",
    ReadOptOutRequests = "read-opt-out-requests",
    ReadOptOutRequest = "read-opt-out-request",
    VerifyOptOutRequest = "verify-opt-out-request",
    RejectOptOutRequest = "reject-opt-out-request",
    SendOptOutLetter = "send-opt-out-letter",
    ConfirmOptOutCode = "confirm-opt-out-code",
    IssueSystemToken = "issue-system-token",
    GatewayStart = "gateway-start",
    /// A source record traced against the Personal Demographics Service by the index sync.
    PdsTrace = "pds-trace",
    /// A local identity (an index person made from a record with no NHS number) found to have
    /// one: its links moved to that NHS number by the index sync.
    ResolveLocalIdentity = "resolve-local-identity",
    /// A person linked a source record to a local identity (a pair in review: one person).
    LocalMatchLink = "local-match-link",
    /// A person ruled out a pair of a source record and a local identity: never linked.
    LocalMatchNotAMatch = "local-match-not-a-match",
    /// A person unlinked a source record from the local identity it was linked to: not
    /// that person, never linked to them again.
    LocalMatchUnlink = "local-match-unlink",
    /// A local identity and the records linked to it, read for review.
    ReadLocalIdentity = "read-local-identity",
}

words! {
    /// How an attempt ended, as the trail stores it.
    Outcome, "outcome" {
        /// Allowed by the policy (or, for a non-clinical action, done).
        Permit = "permit",
        /// Refused.
        Deny = "deny",
        /// Refused until the patient's permission is recorded.
        NeedsPermission = "needs-permission",
        /// Refused until a care relationship is recorded.
        NeedsRelationship = "needs-relationship",
        /// The patient or item asked for is not known.
        NotFound = "not-found",
        /// The attempt failed on our side or a source's.
        Error = "error",
        /// Recorded for review (break-glass, self-claimed relationship, a watch flag).
        Alert = "alert",
        PermissionGiven = "permission-given",
        PermissionRefused = "permission-refused",
        /// An objection now in force.
        Active = "active",
        /// An objection lifted.
        Withdrawn = "withdrawn",
        /// An objection overridden.
        Overridden = "overridden",
        /// A privacy officer's review found the access appropriate.
        Appropriate = "appropriate",
        /// A privacy officer referred the access for investigation.
        ReferredForInvestigation = "referred-for-investigation",
        /// A match decision or a care event recorded.
        Recorded = "recorded",
        Ended = "ended",
        Cancelled = "cancelled",
        Reopened = "reopened",
        Merged = "merged",
        /// A care-event message noted without a change.
        Noted = "noted",
        /// Care events pruned.
        Removed = "removed",
        /// An opt-out (or opt-in) request received from the public site.
        Received = "received",
        Verified = "verified",
        Rejected = "rejected",
        LetterSent = "letter-sent",
        /// A letter's code entered right.
        CodeConfirmed = "code-confirmed",
        /// A letter's code entered wrong.
        WrongCode = "wrong-code",
        /// A letter's code entered for a request that does not exist.
        UnknownReference = "unknown-reference",
        /// A letter's code entered for a request no letter was sent for.
        NoLetter = "no-letter",
        /// A letter's code entered after too many wrong ones.
        LetterSpent = "letter-spent",
        /// A person added to the protected list.
        Added = "added",
        /// The gateway started.
        Started = "started",
        /// A PDS trace linked a source record to the NHS number PDS gave.
        Linked = "linked",
        /// A PDS trace sent a pair to the matching review queue.
        SentToReview = "sent-to-review",
        /// A PDS trace found no one (or more than one), or the record could not be traced.
        NoMatch = "no-match",
    }
}

words! {
    /// The way in through which an authentication (or a request refused at the door) came:
    /// the `{channel}` of `authenticate:{channel}`.
    AuthChannel, "authentication channel" {
        /// A bearer token on the FHIR API.
        Api = "api",
        /// A token's scopes did not allow the request.
        Scope = "scope",
        /// The sign-in's assurance was too low for a record view.
        Assurance = "assurance",
        /// Choosing a role profile.
        Role = "role",
        /// Staff sign-in (CIS2).
        SignIn = "sign-in",
        /// A SMART app launch.
        Launch = "launch",
        /// A system (SMART backend services) acting for itself.
        System = "system",
        /// A patient's sign-in with NHS login.
        PatientSignIn = "patient-sign-in",
        /// A signed-in patient's request.
        PatientAccess = "patient-access",
    }
}

words! {
    /// A request refused before the gateway, counted and audited in aggregate: the `{kind}`
    /// of `refused:{kind}`.
    RefusalKind, "refusal kind" {
        Csrf = "csrf",
        InvalidNhsNumber = "invalid-nhs-number",
        TooLarge = "too-large",
        UriTooLong = "uri-too-long",
        HeadersTooLarge = "headers-too-large",
        RateLimited = "rate-limited",
    }
}

impl AuthChannel {
    /// `authenticate:{channel}`, as stored.
    fn action_word(self) -> &'static str {
        match self {
            Self::Api => "authenticate:api",
            Self::Scope => "authenticate:scope",
            Self::Assurance => "authenticate:assurance",
            Self::Role => "authenticate:role",
            Self::SignIn => "authenticate:sign-in",
            Self::Launch => "authenticate:launch",
            Self::System => "authenticate:system",
            Self::PatientSignIn => "authenticate:patient-sign-in",
            Self::PatientAccess => "authenticate:patient-access",
        }
    }
}

impl RefusalKind {
    /// `refused:{kind}`, as stored.
    fn action_word(self) -> &'static str {
        match self {
            Self::Csrf => "refused:csrf",
            Self::InvalidNhsNumber => "refused:invalid-nhs-number",
            Self::TooLarge => "refused:too-large",
            Self::UriTooLong => "refused:uri-too-long",
            Self::HeadersTooLarge => "refused:headers-too-large",
            Self::RateLimited => "refused:rate-limited",
        }
    }
}

impl Action {
    /// Every action the trail can hold, each once.
    pub fn all() -> impl Iterator<Item = Action> {
        Action::PLAIN
            .iter()
            .copied()
            .chain(AuthChannel::ALL.iter().map(|c| Action::Authenticate(*c)))
            .chain(RefusalKind::ALL.iter().map(|k| Action::Refused(*k)))
    }

    /// The action's FHIR `AuditEvent` coding (type, subtype, C/R/U/D/E).
    pub fn coding(self) -> EventCoding {
        use EventAction::{Create, Delete, Execute, Read, Update};
        match self {
            Action::ViewRecord
            | Action::ViewRecordAnswered
            | Action::ExplainAccess
            | Action::ConfirmOptOutCode => rest(OPERATION, Execute),
            // FHIR's `Patient/$merge` and its reversal: operations that change the index.
            Action::MergePatients | Action::UnmergePatients | Action::ResolveLocalIdentity => {
                rest(OPERATION, Update)
            }
            Action::OpenDocument
            | Action::ReadConsents
            | Action::ReadAccessHistory
            | Action::ReadProtectedPersons
            | Action::ReadOptOutRequest
            | Action::ReadLocalIdentity => rest(READ, Read),
            Action::SearchPatient
            | Action::SearchAudit
            | Action::ReadReviewQueue
            | Action::ReadMatchQueue
            | Action::ReadMerges
            | Action::ListHeldMessages
            | Action::ReadOptOutRequests
            | Action::PdsTrace => rest(SEARCH, Execute),
            Action::RecordPermission
            | Action::RecordPermissionOnBehalf
            | Action::ClaimRelationship
            | Action::EmergencyAccess
            | Action::RecordObjection
            | Action::ProtectPerson
            | Action::ReviewAccess
            | Action::AnomalyFlag
            | Action::MatchLink
            | Action::MatchNotAMatch
            | Action::LocalMatchLink
            | Action::LocalMatchNotAMatch
            | Action::CareEvent
            | Action::OptOutRequest
            | Action::OptInRequest
            | Action::SendOptOutLetter => rest(CREATE, Create),
            Action::WithdrawObjection
            | Action::OverrideObjection
            | Action::VerifyOptOutRequest
            | Action::RejectOptOutRequest => rest(UPDATE, Update),
            // A link removed (the decision that it is not the person is kept beside it).
            Action::UnprotectPerson | Action::PruneCareEvents | Action::LocalMatchUnlink => {
                rest(DELETE, Delete)
            }
            Action::IssueSystemToken => EventCoding {
                event_type: USER_AUTHENTICATION,
                subtype: Some(GET_ACCESS_TOKEN),
                action: Execute,
            },
            Action::GatewayStart => EventCoding {
                event_type: APPLICATION_ACTIVITY,
                subtype: Some(APPLICATION_START),
                action: Execute,
            },
            Action::Authenticate(_) => EventCoding {
                event_type: USER_AUTHENTICATION,
                subtype: Some(LOGIN),
                action: Execute,
            },
            // A refused request never became an interaction: a security alert, with no
            // standard subtype.
            Action::Refused(_) => EventCoding {
                event_type: SECURITY_ALERT,
                subtype: None,
                action: Execute,
            },
        }
    }
}

impl FromStr for Action {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        let known = if let Some(channel) = s.strip_prefix("authenticate:") {
            channel.parse().ok().map(Action::Authenticate)
        } else if let Some(kind) = s.strip_prefix("refused:") {
            kind.parse().ok().map(Action::Refused)
        } else {
            Action::plain(s)
        };
        known.ok_or_else(|| UnknownWord {
            kind: "action",
            word: s.to_owned(),
        })
    }
}

impl Outcome {
    /// The `audit-event-outcome` code: 0 success, 4 minor failure (the request was refused),
    /// 8 serious failure (it could not be done). Nothing here is a major failure (12).
    pub fn code(self) -> &'static str {
        match self {
            Self::Deny
            | Self::NeedsPermission
            | Self::NeedsRelationship
            | Self::NotFound
            | Self::WrongCode
            | Self::UnknownReference
            | Self::NoLetter
            | Self::LetterSpent => "4",
            Self::Error => "8",
            Self::Permit
            | Self::Alert
            | Self::PermissionGiven
            | Self::PermissionRefused
            | Self::Active
            | Self::Withdrawn
            | Self::Overridden
            | Self::Appropriate
            | Self::ReferredForInvestigation
            | Self::Recorded
            | Self::Ended
            | Self::Cancelled
            | Self::Reopened
            | Self::Merged
            | Self::Noted
            | Self::Removed
            | Self::Received
            | Self::Verified
            | Self::Rejected
            | Self::LetterSent
            | Self::CodeConfirmed
            | Self::Added
            | Self::Started
            | Self::Linked
            | Self::SentToReview
            | Self::NoMatch => "0",
        }
    }
}

macro_rules! as_string {
    ($($t:ty),+) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )+};
}

as_string!(Action, Outcome, AuthChannel, RefusalKind);

#[cfg(test)]
mod tests;
