//! Access decisions for My Care Record: pure functions from who is asking, about whom, and what
//! is recorded, to permit, ask, or deny; and the filters applied to what sources send back.
//!
//! This crate **owns** the rules of access and the [`Grant`], the only key to clinical data: a
//! grant can be made only by [`decide`] (or [`explain`]), and code that fetches from sources
//! takes `&Grant`. It also owns the sensitive-data filter ([`withhold`]) and data sharing
//! agreements ([`SharingAgreement`]).
//!
//! It must **never** do I/O, run asynchronously, read the clock (time comes in the request),
//! log patient data, or fail open: anything it does not recognise is a denial.
//!
//! # The rules, in order (deny by default; the first rule that decides wins)
//!
//! 1. **Purpose**: only direct care ([`DenyCode::PurposeNotSupported`] otherwise).
//! 2. **Organisation kind**: private companies and third parties are always denied, whatever
//!    else is recorded, even a relationship, permission or emergency ([`DenyCode::OrgKindExcluded`]).
//! 3. **Membership**: the organisation must be a member ([`DenyCode::OrgNotMember`]).
//! 4. **Suspension**: a suspended member may not view ([`DenyCode::OrgSuspended`]).
//! 5. **Role**: the role must map to at least one data class in the configured matrix
//!    (privacy officers map to none: [`DenyCode::RoleNoClinicalAccess`]). Admin staff get a
//!    grant for demographics and care team only, under the same rules as everyone else.
//! 6. **Objection**: an active objection denies ([`DenyCode::OptedOut`]) unless the
//!    region sets `emergency_passes_opt_out` and a clinical role is using emergency access.
//!    A withdrawn objection does not count. An override counts only when recorded by one of
//!    `override_roles` (otherwise the objection stands) and only from when it was recorded
//!    until it ends (`override_hours` by default; never more than `override_max_days`): then
//!    the objection applies again. An override passes the objection and takes the place of
//!    permission, but a care relationship is still needed. (Who may lift an objection, and on
//!    what, is the gateway's check: `objection_lift_roles`, on the patient's written request.)
//! 7. **Restriction** (only for a restricted, S-flagged patient): the role must be one of
//!    `restricted_roles` (default doctors, nurses and paramedics), or a clinical role must be
//!    using emergency access (permitted; the gateway flags every such view for the privacy
//!    officer's review). Otherwise [`DenyCode::RestrictedRecord`], whose sentence names the
//!    roles that may. No step is traced for a patient who is not restricted.
//! 8. **Emergency**: emergency access counts only for the user who started it, from its start
//!    until `emergency_minutes` later; otherwise it is ignored. In force for a non-clinical role:
//!    [`DenyCode::EmergencyNotAllowedForRole`]. In force for a clinical role: permit with
//!    [`Basis::Emergency`], no relationship or permission needed (a recorded refusal does not
//!    block break-glass; an opt-out does, rule 6).
//! 9. **Relationship**: a relationship at the user's organisation that has started and not
//!    ended (from care events with their times, or recorded; a self-claim counts only for its
//!    claimant; a finished encounter or a discharge counts for the window of the user's
//!    organisation kind, `relationship_windows`, default `relationship_recent_days`, after it;
//!    an appointment from `appointment_ahead_days` before it until it ends; one that ends
//!    before it starts never counts). None: [`Decision::NeedsRelationship`].
//! 10. **Override**: an overridden objection permits with [`Basis::ObjectionOverridden`].
//! 11. **Permission**, by [`ConsentModel`]:
//!     - `legal-basis`: not asked; permit with [`Basis::LegalBasis`] (permission records are
//!       ignored; the opt-out register is the patient's say).
//!     - `ask-once-record`: the latest answer recorded at the user's organisation (a refusal wins
//!       a tie). Refused less than `permission_episode_hours` ago:
//!       [`DenyCode::PermissionRefused`], saying until when, unless a newer "yes" is recorded;
//!       an older refusal has lapsed with its episode (ask again). Given less than
//!       `permission_episode_hours` ago: permit. Older, or none: [`Decision::NeedsPermission`].
//!     - `ask-every-view`: only this user's own answers at this organisation from the last
//!       `ask_every_view_minutes` count; the latest decides (refused: deny; given: permit);
//!       none: needs permission.
//!
//! A grant expires when its basis does: end of the permission episode or window, end of
//! emergency access, or end of the relationship, whichever is first; `None` when nothing ends.

mod config;
mod decision;
mod filter;
mod grant;
mod inputs;
mod on_behalf;
mod sensitive;
mod sharing;
mod time;

pub use config::{ConsentModel, PolicyConfig};
pub use decision::{
    decide, explain, refuse_caller, Decision, Denial, DenyCode, Explanation, Rule, RuleOutcome,
};
pub use filter::{ResourceFilter, Sight};
pub use grant::{Basis, Grant};
pub use inputs::{
    DecisionRequest, EmergencyAccess, EmergencyReason, ObjectionState, OverrideReason,
    PermissionDecision, PermissionGiver, PermissionRecord, Relationship, RelationshipKind,
    RelationshipWindows,
};
pub use on_behalf::OnBehalfReason;
pub use sensitive::{
    withhold, SensitiveCategory, SensitiveCode, SensitivityConfig, WithholdReason, SNOMED,
    V3_ACT_CODE, V3_CONFIDENTIALITY,
};
pub use sharing::{is_excluded_kind, SharingAgreement, EXCLUDED_KINDS};
