use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The kinds of organisation the programme knows. Only some may ever view (see the policy crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrgKind {
    GpPractice,
    AcuteTrust,
    CommunityTrust,
    MentalHealthTrust,
    AmbulanceService,
    LocalAuthoritySocialCare,
    Hospice,
    CommunityPharmacy,
    PrivateCompany,
    ThirdParty,
}

impl OrgKind {
    pub const ALL: [OrgKind; 10] = [
        OrgKind::GpPractice,
        OrgKind::AcuteTrust,
        OrgKind::CommunityTrust,
        OrgKind::MentalHealthTrust,
        OrgKind::AmbulanceService,
        OrgKind::LocalAuthoritySocialCare,
        OrgKind::Hospice,
        OrgKind::CommunityPharmacy,
        OrgKind::PrivateCompany,
        OrgKind::ThirdParty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::GpPractice => "gp-practice",
            OrgKind::AcuteTrust => "acute-trust",
            OrgKind::CommunityTrust => "community-trust",
            OrgKind::MentalHealthTrust => "mental-health-trust",
            OrgKind::AmbulanceService => "ambulance-service",
            OrgKind::LocalAuthoritySocialCare => "local-authority-social-care",
            OrgKind::Hospice => "hospice",
            OrgKind::CommunityPharmacy => "community-pharmacy",
            OrgKind::PrivateCompany => "private-company",
            OrgKind::ThirdParty => "third-party",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            OrgKind::GpPractice => "GP practice",
            OrgKind::AcuteTrust => "Acute hospital trust",
            OrgKind::CommunityTrust => "Community trust",
            OrgKind::MentalHealthTrust => "Mental health trust",
            OrgKind::AmbulanceService => "Ambulance service",
            OrgKind::LocalAuthoritySocialCare => "Local authority social care",
            OrgKind::Hospice => "Hospice",
            OrgKind::CommunityPharmacy => "Community pharmacy",
            OrgKind::PrivateCompany => "Private company",
            OrgKind::ThirdParty => "Third party",
        }
    }
}

impl fmt::Display for OrgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrgKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrgKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown organisation kind `{s}`"))
    }
}

/// An ODS (Organisation Data Service) code such as `E82001` or `RWH`: 3 to 10 upper-case
/// letters and digits. Held shared, as [`crate::SourceId`] is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an ODS code is 3 to 10 capital letters and digits; got `{0}`")]
pub struct OdsCodeError(String);

impl OdsCode {
    pub const SYSTEM: &'static str = "https://fhir.nhs.uk/Id/ods-organization-code";

    pub fn parse(s: &str) -> Result<Self, OdsCodeError> {
        let ok = (3..=10).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(OdsCodeError(s.chars().take(20).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OdsCode {
    type Error = OdsCodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OdsCode> for String {
    fn from(value: OdsCode) -> Self {
        value.0.as_ref().to_owned()
    }
}

/// An organisation known to the programme: source, viewer, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    pub code: OdsCode,
    pub name: String,
    pub kind: OrgKind,
    /// Signed up to the programme's data sharing agreement.
    #[serde(default)]
    pub member: bool,
    /// Membership suspended (e.g. pending an investigation); no views while set.
    #[serde(default)]
    pub suspended: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ods_codes() {
        assert!(OdsCode::parse("E82001").is_ok());
        assert!(OdsCode::parse("RWH").is_ok());
        assert!(OdsCode::parse("e82001").is_err());
        assert!(OdsCode::parse("E8").is_err());
        assert!(OdsCode::parse("E82001<script>").is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in OrgKind::ALL {
            assert_eq!(k.as_str().parse::<OrgKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert!("hospital".parse::<OrgKind>().is_err());
    }
}
