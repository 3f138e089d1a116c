//! The grant: the only key to clinical data.

use crate::inputs::{EmergencyReason, OverrideReason, PermissionGiver, RelationshipKind};
use crate::sharing::SharingAgreement;
use crate::ConsentModel;
use chrono::{DateTime, Utc};
use mcr_domain::{DataClass, NhsNumber, OdsCode, OrgKind, Purpose, Role};
use serde::Serialize;
use std::collections::BTreeSet;

/// Why a view was permitted, in enough detail to tell the patient "who looked at my record and
/// why".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// A care relationship and the patient's permission, asked under `model`.
    RelationshipAndPermission {
        relationship: RelationshipKind,
        model: ConsentModel,
        given_by: PermissionGiver,
        given_at: DateTime<Utc>,
    },
    /// A care relationship; the region relies on its legal basis for direct care and does not ask.
    LegalBasis { relationship: RelationshipKind },
    /// Emergency (break-glass) access; no relationship or permission was needed.
    Emergency {
        reason: EmergencyReason,
        started_at: DateTime<Utc>,
        /// True when the patient had opted out and the region lets emergency access pass that.
        passed_opt_out: bool,
    },
    /// The patient opted out, and a designated role recorded an override; a care relationship
    /// was still needed.
    ObjectionOverridden {
        reason: OverrideReason,
        by_role: Role,
        at: DateTime<Utc>,
        relationship: RelationshipKind,
    },
}

impl Basis {
    /// Machine code for audit and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Basis::RelationshipAndPermission { .. } => "relationship-and-permission",
            Basis::LegalBasis { .. } => "legal-basis",
            Basis::Emergency { .. } => "emergency",
            Basis::ObjectionOverridden { .. } => "objection-overridden",
        }
    }

    /// A sentence for the patient: why this person could look.
    pub fn describe(&self) -> String {
        match self {
            Basis::RelationshipAndPermission { relationship, given_by, given_at, .. } => format!(
                "They were involved in your care ({}) and permission was given by {} on {}.",
                relationship.describe(),
                given_by.describe(),
                given_at.format("%-d %B %Y at %H:%M")
            ),
            Basis::LegalBasis { relationship } => format!(
                "They were involved in your care ({}); records are shared for direct care without asking each time.",
                relationship.describe()
            ),
            Basis::Emergency { reason, passed_opt_out, .. } => {
                let mut s = format!(
                    "Emergency access: {}. Every emergency access is reviewed by a privacy officer.",
                    reason.describe()
                );
                if *passed_opt_out {
                    s.push_str(" Your opt-out was set aside because this region allows it in an emergency.");
                }
                s
            }
            Basis::ObjectionOverridden { reason, relationship, .. } => format!(
                "You had opted out, but the opt-out was overridden {}; they were involved in your care ({}).",
                reason.describe(),
                relationship.describe()
            ),
        }
    }
}

/// Permission to fetch one patient's data for one user, for some data classes, until it expires.
///
/// Only [`crate::decide`] makes one: there is no public constructor, no `Default` and no
/// `Deserialize`, so code that fetches from sources (which takes `&Grant`) cannot run without a
/// decision.
///
/// Each of these fails to compile, for one reason each:
///
/// ```compile_fail,E0624
/// // The constructor is private to the policy crate.
/// let _ = mcr_policy::Grant::new;
/// ```
///
/// ```compile_fail,E0277
/// // Not Default.
/// let g: mcr_policy::Grant = Default::default();
/// ```
///
/// ```compile_fail,E0277
/// // Not Deserialize.
/// let g: Result<mcr_policy::Grant, _> = serde_json::from_str("{}");
/// ```
///
/// ```compile_fail,E0451
/// // Fields are private, so no struct literal either.
/// fn forge(g: &mcr_policy::Grant) -> mcr_policy::Grant {
///     mcr_policy::Grant { user_id: "intruder".into(), ..g.clone() }
/// }
/// ```
///
/// The only way to a grant is a decision:
///
/// ```
/// # use mcr_policy::{decide, Decision, DecisionRequest, PolicyConfig};
/// # fn view(req: &DecisionRequest<'_>) {
/// if let Decision::Permit(grant) = decide(req, &PolicyConfig::default()) {
///     let _classes = grant.data_classes();
/// }
/// # }
/// # let _: Result<PolicyConfig, _> = serde_json::from_str("{}"); // serde_json is reachable here
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    patient: NhsNumber,
    user_id: String,
    role: Role,
    org_code: OdsCode,
    org_kind: OrgKind,
    purpose: Purpose,
    data_classes: BTreeSet<DataClass>,
    basis: Basis,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl Grant {
    #[expect(
        clippy::too_many_arguments,
        reason = "private constructor mirroring the fields"
    )]
    pub(crate) fn new(
        patient: NhsNumber,
        user_id: String,
        role: Role,
        org_code: OdsCode,
        org_kind: OrgKind,
        purpose: Purpose,
        data_classes: BTreeSet<DataClass>,
        basis: Basis,
        issued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            patient,
            user_id,
            role,
            org_code,
            org_kind,
            purpose,
            data_classes,
            basis,
            issued_at,
            expires_at,
        }
    }

    pub fn patient(&self) -> &NhsNumber {
        &self.patient
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn org_code(&self) -> &OdsCode {
        &self.org_code
    }

    pub fn org_kind(&self) -> OrgKind {
        self.org_kind
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    pub fn data_classes(&self) -> &BTreeSet<DataClass> {
        &self.data_classes
    }

    pub fn allows(&self, class: DataClass) -> bool {
        self.data_classes.contains(&class)
    }

    pub fn basis(&self) -> &Basis {
        &self.basis
    }

    pub fn issued_at(&self) -> DateTime<Utc> {
        self.issued_at
    }

    /// When the basis runs out (end of the permission episode, of emergency access, or of the
    /// relationship); `None` when it does not (legal basis with an open relationship).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// True when the grant may still be used at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.issued_at
            && match self.expires_at {
                Some(e) => now < e,
                None => true,
            }
    }

    /// The classes that may be fetched from one source: the grant's classes that the source's
    /// data sharing agreement shares with this organisation's kind. No agreement recorded: the
    /// source shares everything with member kinds.
    pub fn effective_classes_for_source(
        &self,
        agreement: Option<&SharingAgreement>,
    ) -> BTreeSet<DataClass> {
        self.data_classes
            .iter()
            .copied()
            .filter(|c| SharingAgreement::allows_opt(agreement, self.org_kind, *c))
            .collect()
    }
}
