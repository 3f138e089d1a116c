use crate::Organisation;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a member of staff does, as far as access to records goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Doctor: GP, hospital doctor.
    Clinician,
    Nurse,
    Paramedic,
    Pharmacist,
    SocialCarePractitioner,
    /// Receptionist or administrative staff.
    Admin,
    PrivacyOfficer,
    /// The senior person responsible for protecting patients' information in an organisation:
    /// decides on objections with the privacy officers; sees no clinical data through this role.
    CaldicottGuardian,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Clinician,
        Role::Nurse,
        Role::Paramedic,
        Role::Pharmacist,
        Role::SocialCarePractitioner,
        Role::Admin,
        Role::PrivacyOfficer,
        Role::CaldicottGuardian,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Paramedic => "paramedic",
            Role::Pharmacist => "pharmacist",
            Role::SocialCarePractitioner => "social-care-practitioner",
            Role::Admin => "admin",
            Role::PrivacyOfficer => "privacy-officer",
            Role::CaldicottGuardian => "caldicott-guardian",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Clinician => "Doctor",
            Role::Nurse => "Nurse",
            Role::Paramedic => "Paramedic",
            Role::Pharmacist => "Pharmacist",
            Role::SocialCarePractitioner => "Social care practitioner",
            Role::Admin => "Receptionist or administrator",
            Role::PrivacyOfficer => "Privacy officer",
            Role::CaldicottGuardian => "Caldicott guardian",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// Why a record is being looked at. Only direct care is served today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    DirectCare,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::DirectCare => "directcare",
        }
    }
}

/// The kinds of data a role may be granted. Every item in a record belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataClass {
    Demographics,
    CareTeam,
    Alerts,
    /// Advance decisions to refuse treatment, DNACPR and ReSPECT decisions, lasting powers of
    /// attorney for health and welfare: what a paramedic needs first.
    LegalEndOfLife,
    Allergies,
    Problems,
    Medications,
    Encounters,
    Results,
    Immunisations,
    Procedures,
    /// Referrals (`ServiceRequest`).
    Referrals,
    Appointments,
    Documents,
    Assessments,
    CarePlans,
    KeyContacts,
}

impl DataClass {
    pub const ALL: [DataClass; 17] = [
        DataClass::Demographics,
        DataClass::CareTeam,
        DataClass::Alerts,
        DataClass::LegalEndOfLife,
        DataClass::Allergies,
        DataClass::Problems,
        DataClass::Medications,
        DataClass::Encounters,
        DataClass::Results,
        DataClass::Immunisations,
        DataClass::Procedures,
        DataClass::Referrals,
        DataClass::Appointments,
        DataClass::Documents,
        DataClass::Assessments,
        DataClass::CarePlans,
        DataClass::KeyContacts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Demographics => "demographics",
            DataClass::CareTeam => "care-team",
            DataClass::Alerts => "alerts",
            DataClass::LegalEndOfLife => "legal-end-of-life",
            DataClass::Allergies => "allergies",
            DataClass::Problems => "problems",
            DataClass::Medications => "medications",
            DataClass::Encounters => "encounters",
            DataClass::Results => "results",
            DataClass::Immunisations => "immunisations",
            DataClass::Procedures => "procedures",
            DataClass::Referrals => "referrals",
            DataClass::Appointments => "appointments",
            DataClass::Documents => "documents",
            DataClass::Assessments => "assessments",
            DataClass::CarePlans => "care-plans",
            DataClass::KeyContacts => "key-contacts",
        }
    }
}

impl std::str::FromStr for DataClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown data class `{s}`"))
    }
}

/// A signed-in member of staff, as established by a verified identity token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable user id from the identity provider (e.g. a CIS2 UUID).
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub organisation: Organisation,
    /// The NHS CIS2 role profile (`person_roleid`) the user is working in, when they signed in
    /// with national RBAC: it is named in every audit record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_profile: Option<String>,
}
