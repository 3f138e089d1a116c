//! The region's access configuration. `Default` is the 2017 My Care Record model.

use crate::sensitive::SensitivityConfig;
use mcr_domain::{DataClass, OrgKind, Role};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How permission to view is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentModel {
    /// Ask at every view (e.g. Greater Manchester): the viewing user's own answer, recorded in
    /// the last `ask_every_view_minutes`.
    AskEveryView,
    /// Ask once and record it for the organisation, valid for `permission_episode_hours`
    /// (My Care Record 2017).
    #[default]
    AskOnceRecord,
    /// No ask: direct care under legal basis (e.g. Mid and South Essex); opt-outs still apply.
    LegalBasis,
}

impl ConsentModel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentModel::AskEveryView => "ask-every-view",
            ConsentModel::AskOnceRecord => "ask-once-record",
            ConsentModel::LegalBasis => "legal-basis",
        }
    }
}

/// Access rules for one region. Deserialized from the settings file; every field may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub consent_model: ConsentModel,
    /// How long a recorded permission lasts under `ask-once-record`.
    pub permission_episode_hours: u32,
    /// How recent the user's own recorded answer must be under `ask-every-view`.
    pub ask_every_view_minutes: u32,
    /// Whether emergency access passes an opt-out. Default: it does not.
    pub emergency_passes_opt_out: bool,
    /// How long emergency access lasts once started.
    pub emergency_minutes: u32,
    /// Which data classes each role may see. A role absent or mapped to nothing sees no
    /// clinical data.
    pub roles: BTreeMap<Role, BTreeSet<DataClass>>,
    /// Roles that may use emergency (break-glass) access.
    pub clinical_roles: BTreeSet<Role>,
    /// Roles that may view a restricted (S-flagged) patient's record at all; every other role
    /// is refused, saying which roles can. Emergency access by a clinical role passes the
    /// restriction, and each such view is flagged for the privacy officer's review.
    pub restricted_roles: BTreeSet<Role>,
    /// Roles whose recorded override of an objection counts.
    pub override_roles: BTreeSet<Role>,
    /// How long an objection override lasts when its end is not given, and the longest it may
    /// last: an override is reviewed and runs out, it never stands for ever.
    pub override_hours: u32,
    pub override_max_days: u32,
    /// Roles that may lift (withdraw) an objection, and only on the patient's own written
    /// request, quoted by its reference. Everyone else is refused, and the attempt is reviewed.
    pub objection_lift_roles: BTreeSet<Role>,
    /// A finished encounter or a discharge counts as a relationship for this many days after
    /// it ended, where `relationship_windows` names no other for the organisation kind.
    pub relationship_recent_days: u32,
    /// The window per organisation kind (`[policy.relationship_windows]`, e.g.
    /// `acute-trust = 90`), in days; kinds absent use `relationship_recent_days`.
    pub relationship_windows: BTreeMap<OrgKind, u32>,
    /// An appointment counts as a relationship from this many days before it.
    pub appointment_ahead_days: u32,
    /// Roles that see only recent encounters, and how many days back (e.g. social care sees
    /// recent admissions, not a lifetime of appointments).
    pub recent_encounters_days: BTreeMap<Role, u32>,
    pub sensitive: SensitivityConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        use DataClass as C;
        let all: BTreeSet<DataClass> = DataClass::ALL.into_iter().collect();
        // Social care: the care-relevant subset. Legal and end-of-life decisions (who holds a
        // lasting power of attorney, an advance decision) shape care decisions; referrals
        // say who else is involved.
        let social: BTreeSet<DataClass> = [
            C::Demographics,
            C::CareTeam,
            C::Alerts,
            C::LegalEndOfLife,
            C::Allergies,
            C::KeyContacts,
            C::CarePlans,
            C::Referrals,
            C::Assessments,
            C::Encounters,
        ]
        .into_iter()
        .collect();
        let admin: BTreeSet<DataClass> = [C::Demographics, C::CareTeam].into_iter().collect();
        let roles = BTreeMap::from([
            (Role::Clinician, all.clone()),
            (Role::Nurse, all.clone()),
            (Role::Paramedic, all.clone()),
            (Role::Pharmacist, all),
            (Role::SocialCarePractitioner, social),
            (Role::Admin, admin),
            (Role::PrivacyOfficer, BTreeSet::new()),
            (Role::CaldicottGuardian, BTreeSet::new()),
        ]);
        Self {
            consent_model: ConsentModel::AskOnceRecord,
            permission_episode_hours: 24,
            ask_every_view_minutes: 10,
            emergency_passes_opt_out: false,
            emergency_minutes: 240,
            roles,
            clinical_roles: [Role::Clinician, Role::Nurse, Role::Paramedic]
                .into_iter()
                .collect(),
            // Those treating the patient; receptionists, pharmacists and social care are
            // refused unless the region names them.
            restricted_roles: [Role::Clinician, Role::Nurse, Role::Paramedic]
                .into_iter()
                .collect(),
            // The Caldicott guardian function; regions that let safeguarding leads record
            // overrides add `clinician`.
            override_roles: [Role::PrivacyOfficer, Role::CaldicottGuardian]
                .into_iter()
                .collect(),
            override_hours: 72,
            override_max_days: 30,
            objection_lift_roles: [Role::PrivacyOfficer, Role::CaldicottGuardian]
                .into_iter()
                .collect(),
            relationship_recent_days: 90,
            relationship_windows: BTreeMap::new(),
            appointment_ahead_days: 30,
            recent_encounters_days: BTreeMap::from([(Role::SocialCarePractitioner, 90)]),
            sensitive: SensitivityConfig::default(),
        }
    }
}

impl PolicyConfig {
    /// The data classes `role` may see; empty when none.
    pub fn classes_for(&self, role: Role) -> BTreeSet<DataClass> {
        self.roles.get(&role).cloned().unwrap_or_default()
    }

    /// How long time-bound relationships count at an organisation of `kind`.
    pub fn windows_for(&self, kind: OrgKind) -> crate::RelationshipWindows {
        crate::RelationshipWindows {
            recent_days: self
                .relationship_windows
                .get(&kind)
                .copied()
                .unwrap_or(self.relationship_recent_days),
            ahead_days: self.appointment_ahead_days,
        }
    }

    /// The longest time after it ended that any care event can still count as a relationship,
    /// in days: older ended events make no relationship anywhere.
    pub fn longest_relationship_window_days(&self) -> u32 {
        self.relationship_windows
            .values()
            .copied()
            .chain([self.relationship_recent_days])
            .max()
            .unwrap_or(self.relationship_recent_days)
    }

    /// For roles limited to recent encounters, how many days back they see.
    pub fn encounter_window_days(&self, role: Role) -> Option<u32> {
        self.recent_encounters_days.get(&role).copied()
    }

    /// True when `role` may start emergency access.
    pub fn may_use_emergency(&self, role: Role) -> bool {
        self.clinical_roles.contains(&role)
    }

    /// True when `role` may view a restricted patient's record without emergency access.
    pub fn may_view_restricted(&self, role: Role) -> bool {
        self.restricted_roles.contains(&role)
    }

    /// The roles that may view a restricted patient's record, in words ("doctor, nurse or
    /// paramedic"); "nobody" when the region names none.
    pub fn restricted_roles_words(&self) -> String {
        role_words(&self.restricted_roles)
    }

    /// True when `role` may record an objection override.
    pub fn may_record_override(&self, role: Role) -> bool {
        self.override_roles.contains(&role)
    }

    /// True when `role` may lift an objection on the patient's written request.
    pub fn may_lift_objection(&self, role: Role) -> bool {
        self.objection_lift_roles.contains(&role)
    }
}

/// Roles in words, lower case: "doctor, nurse or paramedic"; "nobody" for none.
pub(crate) fn role_words(roles: &BTreeSet<Role>) -> String {
    let names: Vec<String> = roles.iter().map(|r| r.label().to_lowercase()).collect();
    match names.as_slice() {
        [] => "nobody".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
