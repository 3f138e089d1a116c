//! SMART App Launch settings: which host systems (a GP system, a hospital EPR) may open the
//! viewer, with the gateway's registration at each and the rule that matches the host's user
//! to the region's. The launch itself (the pages' side) is `pages/launch.rs`.

use mcr_oidc::smart::{HostRegistration, SmartClient};
use secrecy::SecretString;
use serde::Deserialize;

/// `[smart]`: host systems that may launch the viewer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartSettings {
    #[serde(default)]
    pub hosts: Vec<SmartHostSettings>,
    /// Where a host sends the browser back; default `{base_url}/launch/callback` (register
    /// it with each host).
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Where the region's identity provider sends the browser back during a launch; default
    /// `{base_url}/launch/signin/callback` (register it with the provider beside
    /// `/signin/callback`).
    #[serde(default)]
    pub signin_redirect_url: Option<String>,
}

/// `[[smart.hosts]]`: one host system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartHostSettings {
    /// What users are told, e.g. "Bridge Street Surgery's GP system".
    pub name: String,
    /// The host's FHIR base URL, exactly as it sends it as `iss`.
    pub iss: String,
    /// The gateway's client id at the host's authorization server.
    pub client_id: String,
    /// The client secret; absent: the gateway is a public client of this host (PKCE only).
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Signature algorithms accepted for the host's ID tokens.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Which claim of the host's ID token must equal which claim of the region's.
    pub user_match: UserMatch,
}

/// The host's user is the region's user when `host_claim` of the host's ID token equals
/// `region_claim` of the region provider's ID token (both strings, compared exactly).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMatch {
    pub host_claim: String,
    pub region_claim: String,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

/// A host the gateway will accept a launch from.
#[derive(Debug)]
pub(crate) struct Host {
    pub name: String,
    pub client: SmartClient,
    pub user_match: UserMatch,
}

/// The configured hosts and the gateway's two launch redirect URLs.
#[derive(Debug)]
pub struct Launcher {
    pub(crate) hosts: Vec<Host>,
    pub(crate) redirect_url: String,
    pub(crate) signin_redirect_url: String,
}

impl Launcher {
    /// No host may launch.
    pub fn none(base_url: &str) -> Self {
        Self::new(&SmartSettings::default(), base_url, reqwest::Client::new())
            .expect("no hosts is a valid configuration")
    }

    /// The hosts of `settings`; an error names the host whose settings cannot work.
    pub fn new(
        settings: &SmartSettings,
        base_url: &str,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let base = base_url.trim_end_matches('/');
        let mut hosts = Vec::new();
        for h in &settings.hosts {
            if hosts.iter().any(|x: &Host| x.client.host().iss == h.iss) {
                return Err(format!("[[smart.hosts]] `{}` is listed twice", h.iss));
            }
            let client = SmartClient::new(
                HostRegistration {
                    iss: h.iss.clone(),
                    client_id: h.client_id.clone(),
                    client_secret: h.client_secret.clone(),
                    algorithms: h.algorithms.clone(),
                },
                http.clone(),
            )
            .map_err(|e| format!("[[smart.hosts]] `{}`: {e}", h.name))?;
            hosts.push(Host {
                name: h.name.clone(),
                client,
                user_match: h.user_match.clone(),
            });
        }
        Ok(Self {
            hosts,
            redirect_url: settings
                .redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/launch/callback")),
            signin_redirect_url: settings
                .signin_redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/launch/signin/callback")),
        })
    }

    /// The host that sends `iss`, exactly.
    pub(crate) fn by_iss(&self, iss: &str) -> Option<(usize, &Host)> {
        self.hosts
            .iter()
            .enumerate()
            .find(|(_, h)| h.client.host().iss == iss)
    }

    pub(crate) fn host(&self, i: usize) -> Option<&Host> {
        self.hosts.get(i)
    }

    /// The hosts' names, in configuration order (the standalone launch's choices).
    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }
}

/// The NHS number of a FHIR `Patient` (its `https://fhir.nhs.uk/Id/nhs-number` identifier),
/// checked; `None` when the resource is not a Patient or names no valid NHS number.
pub(crate) fn nhs_number_of(patient: &[u8]) -> Option<mcr_domain::NhsNumber> {
    let v: serde_json::Value = serde_json::from_slice(patient).ok()?;
    if v["resourceType"] != "Patient" {
        return None;
    }
    let mut numbers = v["identifier"]
        .as_array()?
        .iter()
        .filter(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
        .filter_map(|i| i["value"].as_str());
    let first = numbers.next()?;
    // Two different NHS numbers on one Patient: not a context to act on.
    if numbers.any(|n| n != first) {
        return None;
    }
    mcr_domain::NhsNumber::parse(first).ok()
}

/// Whether a launch's `patient` is a FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`).
pub(crate) fn fhir_id(v: &serde_json::Value) -> Option<&str> {
    let s = v.as_str()?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_context_names_one_valid_nhs_number() {
        let p = |ids: serde_json::Value| {
            json!({"resourceType": "Patient", "id": "p1", "identifier": ids}).to_string()
        };
        let nhs = |v: &str| json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": v});
        let good = p(json!([{"system": "urn:local", "value": "x"}, nhs("9434765919")]));
        assert_eq!(
            nhs_number_of(good.as_bytes()).map(|n| n.to_string()),
            Some("9434765919".into())
        );
        for bad in [
            p(json!([nhs("9434765918")])),
            p(json!([nhs("9434765919"), nhs("9434765870")])),
            p(json!([])),
            p(json!("9434765919")),
            json!({"resourceType": "Practitioner", "identifier": [nhs("9434765919")]}).to_string(),
            "not json".into(),
        ] {
            assert_eq!(nhs_number_of(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_patient_id_is_a_fhir_id() {
        assert_eq!(fhir_id(&json!("p-1.2")), Some("p-1.2"));
        for bad in [
            json!(""),
            json!("../x"),
            json!("a b"),
            json!(12),
            json!("a".repeat(65)),
        ] {
            assert_eq!(fhir_id(&bad), None, "{bad}");
        }
    }
}
