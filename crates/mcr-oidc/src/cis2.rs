//! NHS CIS2 national RBAC: a user's role profiles (`nhsid_nrbac_roles`, the claim the
//! `nationalrbacaccess` scope releases), the role profile they chose at sign-in
//! (`selected_roleid`, from the `selectedrole` scope), and how strongly they authenticated
//! (`authentication_assurance_level`, or the level an `acr` value such as `AAL3_ANY` names).
//!
//! A role profile is one job in one organisation: the organisation's ODS code, the national
//! job role (`S…:G…:R…`, the `R` code last), the activity codes (`B` codes) it may perform and
//! its id (`person_roleid`). [`RbacMapping`] turns a profile into one of this service's role
//! names through configuration; what a role may see follows from the role. This module reads
//! claims and configuration only: it never decides access.
//!
//! The claims' shape is NHS England's "CIS2 Authentication: scopes and claims" and "National
//! RBAC for developers" pages (digital.nhs.uk); `tests/fixtures/cis2/` holds published
//! example payloads, each naming where it came from.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The most role profiles read from one claim (a user with more is refused, not truncated).
pub const MAX_PROFILES: usize = 64;

/// `[auth.cis2]`: where the national RBAC claims are, the lowest authentication assurance
/// level that may view a record, and the mapping file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Cis2Config {
    /// The claim holding the role profiles (CIS2: `nhsid_nrbac_roles`, in its UserInfo).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim naming the role profile chosen at the provider (CIS2: `selected_roleid`).
    #[serde(default = "default_selected_claim")]
    pub selected_role_claim: String,
    /// The lowest authentication assurance level (1 to 3) that may view a patient's record;
    /// default 3, smartcard-level.
    #[serde(default = "default_min_assurance")]
    pub min_assurance_for_records: u8,
    /// The mapping file from national job roles and activities to this service's roles;
    /// absent: the mapping shipped with the gateway.
    #[serde(default)]
    pub mapping: Option<std::path::PathBuf>,
}

impl Default for Cis2Config {
    fn default() -> Self {
        Self {
            roles_claim: default_roles_claim(),
            selected_role_claim: default_selected_claim(),
            min_assurance_for_records: default_min_assurance(),
            mapping: None,
        }
    }
}

fn default_roles_claim() -> String {
    "nhsid_nrbac_roles".into()
}

fn default_selected_claim() -> String {
    "selected_roleid".into()
}

fn default_min_assurance() -> u8 {
    3
}

/// One of a user's national RBAC role profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleProfile {
    /// `person_roleid`: the id of this user's role profile, named in every audit record.
    pub id: String,
    /// The ODS code of the organisation the profile is held at.
    pub org_code: String,
    /// The whole national role code, e.g. `S8000:G8000:R8001`.
    pub role_code: String,
    /// The job role: the `R` code, e.g. `R8001`.
    pub job_role: String,
    /// The national role's name as the claim gives it, for the choice page.
    pub role_name: String,
    /// The national activity codes (`B` codes) the profile holds.
    pub activity_codes: Vec<String>,
}

/// What is wrong with a `nationalrbacaccess` claim, saying where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    #[error("it has no `{0}` claim (ask for the `nationalrbacaccess` scope)")]
    Missing(String),
    #[error("its `{0}` claim is not a list of role profiles")]
    NotAList(String),
    #[error("its `{0}` claim lists no role profiles")]
    Empty(String),
    #[error("its `{claim}` claim lists more than {MAX_PROFILES} role profiles")]
    TooMany { claim: String },
    #[error("role profile {index} of its `{claim}` claim {problem}")]
    Profile {
        claim: String,
        index: usize,
        problem: String,
    },
    #[error("it selects role profile `{0}`, which the user does not hold")]
    NotHeld(String),
}

impl RbacError {
    /// The code for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            RbacError::NotHeld(_) => "role-profile-not-held",
            _ => "malformed-nationalrbacaccess",
        }
    }
}

fn field<'a>(p: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match p.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        Some(Value::String(_)) => Err(format!("has an empty `{name}`")),
        Some(_) => Err(format!("has a `{name}` that is not text")),
        None => Err(format!("lacks `{name}`")),
    }
}

fn id_like(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// A national code: a letter then four digits (`R8001`, `B0380`, `S8000`, `G8000`).
fn national_code(s: &str, letter: u8) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[0] == letter && b[1..].iter().all(u8::is_ascii_digit)
}

fn profile(p: &Value) -> Result<RoleProfile, String> {
    let Value::Object(p) = p else {
        return Err("is not an object".into());
    };
    let id = field(p, "person_roleid")?;
    if !id_like(id, 64) {
        return Err("has a `person_roleid` that is not an id".into());
    }
    let org_code = field(p, "org_code")?.to_ascii_uppercase();
    if org_code.len() < 3
        || org_code.len() > 10
        || !org_code.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(format!(
            "has an `org_code` that is not an ODS code (`{}`)",
            clip(&org_code)
        ));
    }
    let role_code = field(p, "role_code")?;
    let job_role = role_code
        .split(':')
        .map(str::trim)
        .find(|part| national_code(part, b'R'))
        .ok_or_else(|| {
            format!(
                "has a `role_code` with no job role R code (`{}`)",
                clip(role_code)
            )
        })?
        .to_owned();
    let role_name = match p.get("role_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => readable_role_name(s),
        _ => job_role.clone(),
    };
    let activity_codes = match p.get("activity_codes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, c) in a.iter().enumerate() {
                match c.as_str().map(str::trim) {
                    Some(c) if national_code(c, b'B') => out.push(c.to_owned()),
                    _ => return Err(format!("has activity code {} that is not a B code", i + 1)),
                }
            }
            out
        }
        Some(_) => return Err("has `activity_codes` that is not a list".into()),
    };
    Ok(RoleProfile {
        id: id.to_owned(),
        org_code,
        role_code: role_code.to_owned(),
        job_role,
        role_name,
        activity_codes,
    })
}

/// CIS2 names roles as `"Clinical":"Clinical Provision":"Nurse Access Role"`: the last part
/// is the one people recognise.
fn readable_role_name(s: &str) -> String {
    let last = s.rsplit("\":\"").next().unwrap_or(s);
    let name: String = last.trim_matches('"').chars().take(120).collect();
    if name.trim().is_empty() {
        s.chars().take(120).collect()
    } else {
        name
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(24).collect()
}

/// The role profiles in `claims[cfg.roles_claim]`, every one checked: a claim with any
/// profile that does not read is refused whole, saying which and why.
pub fn role_profiles(
    claims: &Map<String, Value>,
    cfg: &Cis2Config,
) -> Result<Vec<RoleProfile>, RbacError> {
    let claim = &cfg.roles_claim;
    let list = match claims.get(claim) {
        None | Some(Value::Null) => return Err(RbacError::Missing(claim.clone())),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(RbacError::NotAList(claim.clone())),
    };
    if list.is_empty() {
        return Err(RbacError::Empty(claim.clone()));
    }
    if list.len() > MAX_PROFILES {
        return Err(RbacError::TooMany {
            claim: claim.clone(),
        });
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let at = |problem: String| RbacError::Profile {
            claim: claim.clone(),
            index: i + 1,
            problem,
        };
        let p = profile(p).map_err(at)?;
        if !seen.insert(p.id.clone()) {
            return Err(at(format!("repeats `person_roleid` `{}`", clip(&p.id))));
        }
        out.push(p);
    }
    Ok(out)
}

/// The role profile the provider says was chosen, if it says; it must be one the user holds.
/// With no selection and one profile, that one; with several, `None`: the user chooses.
pub fn selected_profile(
    claims: &Map<String, Value>,
    profiles: &[RoleProfile],
    cfg: &Cis2Config,
) -> Result<Option<String>, RbacError> {
    match claims.get(&cfg.selected_role_claim) {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let s = s.trim();
            if profiles.iter().any(|p| p.id == s) {
                Ok(Some(s.to_owned()))
            } else {
                Err(RbacError::NotHeld(clip(s)))
            }
        }
        _ if profiles.len() == 1 => Ok(Some(profiles[0].id.clone())),
        _ => Ok(None),
    }
}

/// How strongly the user authenticated, 1 to 3 (NIST SP 800-63B AALs, as CIS2 uses them):
/// `authentication_assurance_level` (`"3"`) and the level an `acr` of the form `AAL<n>_…`
/// names; when both are given, the lower. `None`: the token says nothing about it.
pub fn assurance_level(claims: &Map<String, Value>) -> Option<u8> {
    let aal = match claims.get("authentication_assurance_level") {
        Some(Value::String(s)) => s.trim().parse::<u8>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        _ => None,
    }
    .filter(|n| (1..=3).contains(n));
    let acr = claims
        .get("acr")
        .and_then(Value::as_str)
        .and_then(|a| a.strip_prefix("AAL"))
        .and_then(|rest| rest.bytes().next())
        .filter(u8::is_ascii_digit)
        .map(|d| d - b'0')
        .filter(|n| (1..=3).contains(n));
    match (aal, acr) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The mapping from national job roles and activities to this service's roles: the first
/// rule that matches a profile decides its role. A profile no rule matches cannot be used.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RbacMapping {
    /// Where the codes come from (documentation; shown by nothing).
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<MappingRule>,
}

/// One rule: a profile with one of `job_roles` (and, when `any_activity` is given, at least
/// one of those activity codes) is `role`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    pub job_roles: Vec<String>,
    #[serde(default)]
    pub any_activity: Vec<String>,
    /// This service's role name, e.g. `clinician`.
    pub role: String,
    /// Why (documentation).
    #[serde(default)]
    pub note: Option<String>,
}

impl RbacMapping {
    /// The mapping shipped with the gateway (`cis2-rbac-mapping.toml`), as TOML text.
    pub const DEFAULT_TOML: &'static str = include_str!("../cis2-rbac-mapping.toml");

    /// A mapping file's text (TOML).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("the national RBAC mapping: {e}"))
    }

    /// Check the rules' codes; `known_role` says whether a role name exists.
    pub fn validate(&self, known_role: impl Fn(&str) -> bool) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            if r.job_roles.is_empty() {
                return Err(format!("rule {n} names no job_roles"));
            }
            if let Some(j) = r.job_roles.iter().find(|j| !national_code(j, b'R')) {
                return Err(format!("rule {n}: `{j}` is not a job role R code"));
            }
            if let Some(a) = r.any_activity.iter().find(|a| !national_code(a, b'B')) {
                return Err(format!("rule {n}: `{a}` is not an activity B code"));
            }
            if !known_role(&r.role) {
                return Err(format!(
                    "rule {n}: `{}` is not a role of this service",
                    r.role
                ));
            }
        }
        Ok(())
    }

    /// The role name for a profile: the first rule that matches it.
    pub fn role_for(&self, p: &RoleProfile) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| {
                r.job_roles.contains(&p.job_role)
                    && (r.any_activity.is_empty()
                        || r.any_activity.iter().any(|a| p.activity_codes.contains(a)))
            })
            .map(|r| r.role.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Map<String, Value> {
        let path = format!("{}/tests/fixtures/cis2/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
        // Each fixture is `{"source": "...", "claims": {...}}`.
        v["claims"].as_object().cloned().expect("claims object")
    }

    fn cfg() -> Cis2Config {
        Cis2Config::default()
    }

    fn mapping() -> RbacMapping {
        toml::from_str(RbacMapping::DEFAULT_TOML).expect("the shipped mapping parses")
    }

    #[test]
    fn the_published_userinfo_examples_read_as_role_profiles() {
        let claims = fixture("userinfo-four-profiles.json");
        let ps = role_profiles(&claims, &cfg()).expect("reads");
        assert_eq!(ps.len(), 4);
        assert_eq!(ps[0].id, "555254240100");
        assert_eq!(ps[0].org_code, "RBA");
        assert_eq!(ps[0].job_role, "R8001");
        assert_eq!(ps[0].role_name, "Nurse Access Role");
        assert_eq!(ps[0].activity_codes, ["B0278", "B0401", "B0825", "B0058"]);
        // Several profiles and no selection: the user chooses.
        assert_eq!(selected_profile(&claims, &ps, &cfg()), Ok(None));

        let claims = fixture("userinfo-privacy-officer-and-nurse.json");
        let ps = role_profiles(&claims, &cfg()).expect("reads");
        assert_eq!(
            ps.iter()
                .map(|p| (p.id.as_str(), p.org_code.as_str(), p.job_role.as_str()))
                .collect::<Vec<_>>(),
            [
                ("555057898108", "X26", "R0001"),
                ("555057996107", "Y51", "R8001")
            ]
        );
    }

    #[test]
    fn the_published_id_token_gives_its_assurance_and_selection() {
        let id = fixture("id-token-aal1.json");
        assert_eq!(
            assurance_level(&id),
            Some(1),
            "AAL1_USERPASS and level \"1\""
        );
        let one = |acr: &str, aal: Value| {
            let mut m = Map::new();
            m.insert("acr".into(), json!(acr));
            m.insert("authentication_assurance_level".into(), aal);
            assurance_level(&m)
        };
        assert_eq!(one("AAL3_ANY", json!("3")), Some(3));
        assert_eq!(one("AAL3_ANY", json!("2")), Some(2), "the lower of the two");
        assert_eq!(one("AAL2_OR_3", Value::Null), Some(2));
        assert_eq!(one("urn:other", json!(9)), None);
        assert_eq!(assurance_level(&Map::new()), None);
    }

    #[test]
    fn a_selection_must_be_a_profile_the_user_holds() {
        let mut claims = fixture("userinfo-privacy-officer-and-nurse.json");
        let ps = role_profiles(&claims, &cfg()).expect("reads");
        claims.insert("selected_roleid".into(), json!("555057996107"));
        assert_eq!(
            selected_profile(&claims, &ps, &cfg()),
            Ok(Some("555057996107".into()))
        );
        claims.insert("selected_roleid".into(), json!("999999999999"));
        let e = selected_profile(&claims, &ps, &cfg()).expect_err("forged");
        assert_eq!(e.code(), "role-profile-not-held");
        assert!(e.to_string().contains("999999999999"), "{e}");
        // One profile: it is the selection.
        let one = &ps[..1];
        claims.remove("selected_roleid");
        assert_eq!(
            selected_profile(&claims, one, &cfg()),
            Ok(Some("555057898108".into()))
        );
    }

    #[test]
    fn malformed_claims_are_refused_saying_where() {
        let with = |v: Value| {
            let mut m = Map::new();
            m.insert("nhsid_nrbac_roles".into(), v);
            role_profiles(&m, &cfg()).expect_err("refused").to_string()
        };
        let ok =
            json!({"person_roleid": "1", "org_code": "RWH01", "role_code": "S8000:G8000:R8000"});
        assert!(role_profiles(&Map::new(), &cfg())
            .unwrap_err()
            .to_string()
            .contains("no `nhsid_nrbac_roles`"));
        assert!(with(json!("R8000")).contains("not a list"));
        assert!(with(json!([])).contains("lists no role profiles"));
        assert!(with(json!([ok, 7])).contains("role profile 2"));
        assert!(with(json!([{"org_code": "RWH01", "role_code": "R8000"}]))
            .contains("lacks `person_roleid`"));
        assert!(with(
            json!([{"person_roleid": "1", "org_code": "RWH01", "role_code": "S8000:G8000"}])
        )
        .contains("no job role R code"));
        assert!(
            with(json!([{"person_roleid": "1", "org_code": "<b>", "role_code": "R8000"}]))
                .contains("not an ODS code")
        );
        assert!(with(json!([{"person_roleid": "1", "org_code": "RWH01", "role_code": "R8000", "activity_codes": ["B0380", 5]}])).contains("activity code 2"));
        assert!(with(json!([ok, ok])).contains("repeats `person_roleid`"));
        assert!(with(json!(vec![ok; MAX_PROFILES + 1])).contains("more than"));
    }

    #[test]
    fn the_shipped_mapping_maps_national_roles_to_this_services_roles() {
        let m = mapping();
        let known = [
            "clinician",
            "nurse",
            "paramedic",
            "pharmacist",
            "social-care-practitioner",
            "admin",
            "privacy-officer",
            "caldicott-guardian",
        ];
        m.validate(|r| known.contains(&r)).expect("valid");
        assert!(!m.sources.is_empty(), "the mapping cites its sources");
        let p = |job: &str, acts: &[&str]| RoleProfile {
            id: "1".into(),
            org_code: "RWH01".into(),
            role_code: format!("S8000:G8000:{job}"),
            job_role: job.into(),
            role_name: job.into(),
            activity_codes: acts.iter().map(|a| (*a).to_owned()).collect(),
        };
        assert_eq!(m.role_for(&p("R8000", &["B0380"])), Some("clinician"));
        assert_eq!(
            m.role_for(&p("R8000", &["B0100"])),
            Some("admin"),
            "a clinical job role without the detailed health record activity sees demographics only"
        );
        assert_eq!(m.role_for(&p("R8001", &["B0380"])), Some("nurse"));
        assert_eq!(m.role_for(&p("R0001", &[])), Some("privacy-officer"));
        assert_eq!(m.role_for(&p("R5105", &[])), Some("caldicott-guardian"));
        assert_eq!(m.role_for(&p("R8009", &[])), Some("admin"));
        assert_eq!(
            m.role_for(&p("R9999", &["B0380"])),
            None,
            "unmapped: unusable"
        );
        // The published nurse profile holds B0380.
        let claims = fixture("userinfo-privacy-officer-and-nurse.json");
        let ps = role_profiles(&claims, &cfg()).expect("reads");
        assert_eq!(m.role_for(&ps[1]), Some("nurse"));
        assert_eq!(m.role_for(&ps[0]), Some("privacy-officer"));
    }

    #[test]
    fn a_mapping_with_bad_codes_is_refused() {
        let m: RbacMapping =
            toml::from_str("[[rule]]\njob_roles = [\"8000\"]\nrole = \"clinician\"\n")
                .expect("toml");
        assert!(m
            .validate(|_| true)
            .unwrap_err()
            .contains("not a job role R code"));
        let m: RbacMapping =
            toml::from_str("[[rule]]\njob_roles = [\"R8000\"]\nrole = \"surgeon\"\n")
                .expect("toml");
        assert!(m
            .validate(|r| r == "clinician")
            .unwrap_err()
            .contains("`surgeon`"));
    }
}
