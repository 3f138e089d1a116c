//! Finding a practice's GP Connect endpoint: a lookup in the shape of the NHS Spine Directory
//! Service FHIR API (`GET /Endpoint` for the address, `GET /Device` for the ASID, each by the
//! practice's ODS code and the interaction), cached with an expiry so a view does not wait on
//! the directory each time.

use mcr_domain::FailureReason;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// Identifier systems of the Spine Directory Service FHIR API.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const INTERACTION_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhsServiceInteractionId";
pub const ASID_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhsSpineASID";

/// A practice's GP Connect endpoint, as the directory names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The provider's service root (the token's `aud`).
    pub address: Url,
    /// The provider system's ASID (`Ssp-To`).
    pub asid: String,
}

/// The directory and what it said lately.
#[derive(Debug)]
pub struct Directory {
    base: Url,
    api_key: String,
    client: reqwest::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Endpoint)>>,
    lookups: std::sync::atomic::AtomicU64,
}

impl Directory {
    pub fn new(base: Url, api_key: String, client: reqwest::Client, ttl: Duration) -> Self {
        Self {
            base,
            api_key,
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
            lookups: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Lookups that went to the directory (cache misses).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The endpoint of `ods`'s `interaction`, from the cache while it is fresh. Only answers
    /// found are cached: a practice missing from the directory is asked again next time.
    pub async fn endpoint(&self, ods: &str, interaction: &str) -> Result<Endpoint, FailureReason> {
        let key = format!("{ods}\n{interaction}");
        {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, e)) = cache.get(&key) {
                if at.elapsed() < self.ttl {
                    return Ok(e.clone());
                }
            }
        }
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (endpoints, devices) = tokio::try_join!(
            self.search("Endpoint", ods, interaction),
            self.search("Device", ods, interaction)
        )?;
        let address = endpoints
            .iter()
            .filter(|r| r["resourceType"] == "Endpoint")
            .find_map(|r| r["address"].as_str())
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "the directory names no GP Connect endpoint for the practice".into(),
            })?;
        let address = Url::parse(address).map_err(|_| FailureReason::Malformed {
            detail: "the directory's endpoint address is not a URL".into(),
        })?;
        if !matches!(address.scheme(), "https" | "http") {
            return Err(FailureReason::Malformed {
                detail: "the directory's endpoint address is not http(s)".into(),
            });
        }
        let asid = devices
            .iter()
            .filter(|r| r["resourceType"] == "Device")
            .flat_map(|r| r["identifier"].as_array().cloned().unwrap_or_default())
            .find(|i| i["system"] == ASID_SYSTEM)
            .and_then(|i| i["value"].as_str().map(str::to_owned))
            .filter(|a| !a.is_empty() && a.len() <= 20 && a.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "the directory names no ASID for the practice's GP Connect system".into(),
            })?;
        let endpoint = Endpoint { address, asid };
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), endpoint.clone()));
        Ok(endpoint)
    }

    /// `GET {base}/{resource}?organization=…|{ods}&identifier=…|{interaction}`: the resources.
    async fn search(
        &self,
        resource: &str,
        ods: &str,
        interaction: &str,
    ) -> Result<Vec<Value>, FailureReason> {
        let mut url = Url::parse(&format!(
            "{}/{resource}",
            self.base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| FailureReason::Malformed {
            detail: "the directory URL cannot take a path".into(),
        })?;
        url.query_pairs_mut()
            .append_pair("organization", &format!("{ODS_SYSTEM}|{ods}"))
            .append_pair("identifier", &format!("{INTERACTION_SYSTEM}|{interaction}"));
        let response = self
            .client
            .get(url)
            .header("apikey", &self.api_key)
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| directory_failure(&crate::transport::transport_failure(&e)))?;
        if !response.status().is_success() {
            return Err(FailureReason::Unreachable {
                detail: format!("the directory answered HTTP {}", response.status().as_u16()),
            });
        }
        let bundle: Value = response
            .json()
            .await
            .map_err(|_| FailureReason::Malformed {
                detail: "the directory's answer is not JSON".into(),
            })?;
        Ok(bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect())
    }
}

/// A failure to reach the directory, said as such.
fn directory_failure(f: &FailureReason) -> FailureReason {
    FailureReason::Unreachable {
        detail: format!("the endpoint directory {}", f.describe()),
    }
}
