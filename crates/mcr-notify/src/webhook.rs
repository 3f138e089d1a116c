//! The webhook channel: a JSON `POST` of a batch of flags, signed so the receiver knows it came
//! from this gateway and was not replayed.
//!
//! Headers: `X-MCR-Timestamp` (Unix seconds when signed) and `X-MCR-Signature: v1=<hex>`, the
//! HMAC-SHA256 with the shared secret of `{timestamp}.{body}`. A receiver recomputes it over the
//! raw body ([`verify`]) and refuses a timestamp far from its own clock.

use crate::Channel;
use mcr_domain::Clock;
use mcr_gateway::FlagNotice;
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const TIMESTAMP_HEADER: &str = "x-mcr-timestamp";
pub const SIGNATURE_HEADER: &str = "x-mcr-signature";

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub secret: SecretString,
    /// The CA (PEM) an `https://` receiver's certificate must chain to; none: the public web's
    /// roots.
    pub ca: Option<std::path::PathBuf>,
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl WebhookConfig {
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err("the webhook URL must be http or https".into());
        }
        if self.secret.expose_secret().chars().count() < 16 {
            return Err("the webhook secret must be at least 16 characters".into());
        }
        if self.attempts == 0 {
            return Err("the webhook needs at least one attempt".into());
        }
        Ok(())
    }
}

/// `v1=` and the hex HMAC-SHA256 of `{timestamp}.{body}` with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Whether `signature` is [`sign`] of this timestamp and body (compared in constant time).
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(Ok(tag)) = signature.strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &tag).is_ok()
}

/// The message body: the flags (rule, user, count, evidence; no patient data) and the link.
pub fn body(batch: &[FlagNotice], review_url: &str, sent_at: i64) -> Vec<u8> {
    let flags: Vec<_> = batch
        .iter()
        .map(|n| {
            json!({
                "audit_seq": n.seq,
                "at": n.at,
                "rule": n.rule.code(),
                "rule_title": n.rule.title(),
                "user_id": n.user_id,
                "user_name": n.user_name,
                "org_code": n.org_code,
                "org_name": n.org_name,
                "count": n.count,
                "evidence": n.evidence,
            })
        })
        .collect();
    json!({
        "type": "mcr.anomaly-flags",
        "sent_at": sent_at,
        "summary": format!("{}, see the review queue", crate::flags_word(batch.len())),
        "review_queue": review_url,
        "flags": flags,
    })
    .to_string()
    .into_bytes()
}

#[derive(Debug)]
pub(crate) struct Webhook {
    config: WebhookConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Webhook {
    pub(crate) fn new(config: WebhookConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let roots = match &config.ca {
            Some(path) => {
                mcr_tls::load_roots(path).map_err(|e| format!("the webhook CA certificate: {e}"))?
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                Arc::new(roots)
            }
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for the webhook: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("my-care-record/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the webhook's HTTP client: {e}"))?;
        Ok(Self {
            config,
            http,
            clock,
        })
    }
}

#[async_trait::async_trait]
impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn attempts(&self) -> (u32, Duration) {
        (self.config.attempts, self.config.first_backoff)
    }

    async fn send(&self, batch: &[FlagNotice], review_url: &str) -> Result<(), String> {
        let now = self.clock.now().timestamp();
        let body = body(batch, review_url, now);
        let signature = sign(self.config.secret.expose_secret().as_bytes(), now, &body);
        let resp = self
            .http
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // Only the kind of failure: the URL may carry a token.
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_every_byte() {
        let secret = b"a shared secret of 32 characters";
        let sig = sign(secret, 1_772_500_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        assert!(verify(secret, 1_772_500_000, b"{\"a\":1}", &sig));
        assert!(
            !verify(secret, 1_772_500_001, b"{\"a\":1}", &sig),
            "replayed later"
        );
        assert!(
            !verify(secret, 1_772_500_000, b"{\"a\":2}", &sig),
            "body changed"
        );
        assert!(!verify(
            b"another secret of 32 characters!",
            1_772_500_000,
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify(secret, 1_772_500_000, b"{\"a\":1}", "v1=zz"));
        // RFC 4231 test case 2, to show the HMAC is the standard one.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            hex::encode(hmac::sign(&key, b"what do ya want for nothing?").as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_body_names_rule_user_and_count_but_no_patient() {
        let b = body(
            &[crate::tests::notice(41), crate::tests::notice(42)],
            "https://mcr.example/app/review",
            1,
        );
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["summary"], "2 flags, see the review queue");
        assert_eq!(v["flags"][0]["rule"], "many-patients");
        assert_eq!(v["flags"][1]["user_id"], "gp.patel");
        assert_eq!(v["flags"][1]["count"], 31);
        let text = String::from_utf8(b).expect("utf-8");
        assert!(!text.contains("999"), "no NHS number: {text}");
    }
}
