//! NHS CIS2 national RBAC on the web side: which of a user's role profiles can be used here
//! (the mapping gives it one of this service's roles, and its organisation is a member of the
//! programme), the principal a chosen profile makes, and the authentication assurance level a
//! record view needs. The claims themselves are read by [`mcr_oidc::cis2`].

use mcr_domain::{OdsCode, Role};
use mcr_gateway::OrgRegistry;
use mcr_oidc::{RbacMapping, RoleProfile};

/// `[auth.cis2]` as the web applies it.
#[derive(Debug, Clone)]
pub struct Cis2Rules {
    pub mapping: RbacMapping,
    /// The lowest assurance level (1 to 3) that may view a patient's record.
    pub min_assurance_for_records: u8,
}

impl Cis2Rules {
    /// The rules from `[auth.cis2]` and the mapping file's text (the shipped mapping when
    /// none is named); every rule's codes and role are checked.
    pub fn new(cfg: &mcr_oidc::Cis2Config, mapping_toml: &str) -> Result<Self, String> {
        let mapping = RbacMapping::parse(mapping_toml)?;
        mapping.validate(|r| r.parse::<Role>().is_ok())?;
        if !(1..=3).contains(&cfg.min_assurance_for_records) {
            return Err("min_assurance_for_records must be 1, 2 or 3".into());
        }
        Ok(Self {
            mapping,
            min_assurance_for_records: cfg.min_assurance_for_records,
        })
    }
}

/// Why a role profile cannot be used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// No mapping rule gives it a role.
    NotMapped,
    /// Its organisation is not a member of the programme (or is unknown to it).
    NotMember,
    /// Its organisation's membership is suspended.
    Suspended,
}

impl Unusable {
    pub fn code(self) -> &'static str {
        match self {
            Unusable::NotMapped => "role-not-mapped",
            Unusable::NotMember => "organisation-not-member",
            Unusable::Suspended => "organisation-suspended",
        }
    }

    pub fn sentence(self) -> &'static str {
        match self {
            Unusable::NotMapped => "This national role is not one that can use My Care Record.",
            Unusable::NotMember => {
                "This organisation is not a member of My Care Record, so this role cannot be used here."
            }
            Unusable::Suspended => {
                "This organisation's membership of My Care Record is suspended, so this role cannot be used here."
            }
        }
    }
}

/// The role a profile has here, or why it has none.
pub fn classify(rules: &Cis2Rules, orgs: &OrgRegistry, p: &RoleProfile) -> Result<Role, Unusable> {
    let role = rules
        .mapping
        .role_for(p)
        .and_then(|r| r.parse::<Role>().ok())
        .ok_or(Unusable::NotMapped)?;
    match OdsCode::parse(&p.org_code).ok().and_then(|c| orgs.get(&c)) {
        Some(o) if o.member && !o.suspended => Ok(role),
        Some(o) if o.member => Err(Unusable::Suspended),
        _ => Err(Unusable::NotMember),
    }
}

/// The organisation's name as the programme knows it, else its code.
pub fn org_name(orgs: &OrgRegistry, code: &str) -> String {
    OdsCode::parse(code)
        .ok()
        .and_then(|c| orgs.get(&c))
        .map_or_else(|| code.to_owned(), |o| o.name.clone())
}

/// What the too-low page says.
pub fn assurance_sentence(have: Option<u8>, need: u8) -> String {
    let how = match have {
        Some(n) => format!("You signed in at authentication assurance level {n}"),
        None => "Your sign-in did not say how strongly you authenticated".into(),
    };
    format!(
        "{how}; viewing a patient's record needs level {need} (an NHS smartcard or another authenticator of that level). Sign out, then sign in again with your smartcard."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::{OrgKind, Organisation};

    fn org(code: &str, member: bool) -> Organisation {
        Organisation {
            code: OdsCode::parse(code).expect("code"),
            name: format!("Org {code}"),
            kind: OrgKind::AcuteTrust,
            member,
            suspended: false,
        }
    }

    fn profile(org: &str, job: &str, acts: &[&str]) -> RoleProfile {
        RoleProfile {
            id: "1".into(),
            org_code: org.into(),
            role_code: format!("S8000:G8000:{job}"),
            job_role: job.into(),
            role_name: job.into(),
            activity_codes: acts.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn a_profile_is_usable_only_when_mapped_and_at_a_member() {
        let rules = Cis2Rules::new(&mcr_oidc::Cis2Config::default(), RbacMapping::DEFAULT_TOML)
            .expect("the shipped mapping is valid");
        let orgs = OrgRegistry::new([org("RWH01", true), org("PRIV1", false)]);
        assert_eq!(
            classify(&rules, &orgs, &profile("RWH01", "R8000", &["B0380"])),
            Ok(Role::Clinician)
        );
        assert_eq!(
            classify(&rules, &orgs, &profile("PRIV1", "R8000", &["B0380"])),
            Err(Unusable::NotMember)
        );
        assert_eq!(
            classify(&rules, &orgs, &profile("ZZZ99", "R8000", &["B0380"])),
            Err(Unusable::NotMember),
            "an organisation the programme does not know"
        );
        assert_eq!(
            classify(&rules, &orgs, &profile("RWH01", "R9999", &[])),
            Err(Unusable::NotMapped)
        );
        assert!(assurance_sentence(Some(2), 3).contains("level 2"));
        assert!(assurance_sentence(None, 3).contains("did not say"));
    }

    #[test]
    fn a_mapping_naming_an_unknown_role_is_refused_at_start() {
        let e = Cis2Rules::new(
            &mcr_oidc::Cis2Config::default(),
            "[[rule]]\njob_roles = [\"R8000\"]\nrole = \"surgeon\"\n",
        )
        .expect_err("refused");
        assert!(e.contains("surgeon"), "{e}");
    }
}
