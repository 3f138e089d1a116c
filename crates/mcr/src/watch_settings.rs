//! `[watch]` in the gateway's settings: the rules that watch every permitted view, and how
//! privacy officers are told of each flag (`[watch.notify]`: a signed JSON webhook and email
//! over SMTP, batched).

use anyhow::bail;
use mcr_domain::OrgKind;
use mcr_gateway::{WatchConfig, WorkingHours};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// The period distinct patients are counted over; one flag per user and rule within it.
    pub window_minutes: u32,
    /// Flag a user who views more distinct patients than this within the window.
    pub flag_patients: usize,
    /// Refuse (HTTP 429) a view that would make more distinct patients than this.
    pub refuse_patients: usize,
    /// Flag a view of a patient with the user's own family name.
    pub same_family_name: bool,
    /// Working hours per kind of organisation (`gp-practice = "Mon-Fri 07:00-19:00"`), UK local
    /// time. Kinds not listed are not checked; acute trusts and ambulance services never are.
    pub hours: BTreeMap<String, String>,
    /// Who a refused user should contact (ends the refusal's sentence).
    pub contact: String,
    /// Seconds the cached protected person list may age before it is read again.
    pub protected_refresh_seconds: u64,
    pub notify: NotifySettings,
}

impl Default for WatchSettings {
    fn default() -> Self {
        let d = WatchConfig::default();
        Self {
            window_minutes: 60,
            flag_patients: d.flag_patients,
            refuse_patients: d.refuse_patients,
            same_family_name: d.same_family_name,
            hours: d
                .hours
                .iter()
                .map(|(k, h)| (k.as_str().to_owned(), h.as_str().to_owned()))
                .collect(),
            contact: d.contact,
            protected_refresh_seconds: d.protected_refresh.as_secs(),
            notify: NotifySettings::default(),
        }
    }
}

/// `[watch.notify]`: where flags are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// The review queue's address, linked from every message (default: `{base_url}/app/review`).
    pub review_url: Option<String>,
    /// At most one message per channel per this many seconds; flags in between wait for the
    /// next message, which lists them all.
    pub batch_seconds: u64,
    pub webhook: Option<WebhookSettings>,
    pub email: Option<EmailSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            review_url: None,
            batch_seconds: 60,
            webhook: None,
            email: None,
        }
    }
}

/// `[watch.notify.webhook]`: a JSON POST signed with HMAC-SHA256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: url::Url,
    /// The shared secret the signature is made with (at least 16 characters).
    pub secret: secrecy::SecretString,
    /// The CA certificate (PEM) an `https://` receiver's certificate must chain to (default:
    /// the public web's roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Attempts per message before it is counted as failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

/// `[watch.notify.email]`: email over SMTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` (implicit TLS, port 465) or `none` (loopback only).
    #[serde(default = "default_smtp_tls")]
    pub tls: String,
    /// The CA certificate (PEM) the server's certificate must chain to (default: the public
    /// web's roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<secrecy::SecretString>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_attempts() -> u32 {
    5
}

fn default_smtp_port() -> u16 {
    587
}

fn default_smtp_tls() -> String {
    "starttls".into()
}

impl WatchSettings {
    /// The gateway's watch configuration, checked.
    pub fn config(&self) -> anyhow::Result<WatchConfig> {
        let mut hours = BTreeMap::new();
        for (kind, text) in &self.hours {
            let k: OrgKind = kind
                .parse()
                .map_err(|e: String| anyhow::anyhow!("config: watch.hours: {e}"))?;
            let h = WorkingHours::parse(text)
                .map_err(|e| anyhow::anyhow!("config: watch.hours.{kind}: {e}"))?;
            hours.insert(k, h);
        }
        let c = WatchConfig {
            window: chrono::Duration::minutes(i64::from(self.window_minutes)),
            flag_patients: self.flag_patients,
            refuse_patients: self.refuse_patients,
            same_family_name: self.same_family_name,
            hours,
            contact: self.contact.trim().to_owned(),
            protected_refresh: std::time::Duration::from_secs(self.protected_refresh_seconds),
        };
        c.validate().map_err(|e| anyhow::anyhow!("config: {e}"))?;
        Ok(c)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.config()?;
        let n = &self.notify;
        if n.batch_seconds == 0 || n.batch_seconds > 86_400 {
            bail!("config: watch.notify.batch_seconds must be between 1 and 86400");
        }
        if let Some(w) = &n.webhook {
            use secrecy::ExposeSecret;
            if !matches!(w.url.scheme(), "http" | "https") {
                bail!("config: watch.notify.webhook.url must be http or https");
            }
            if w.secret.expose_secret().chars().count() < 16 {
                bail!("config: watch.notify.webhook.secret must be at least 16 characters");
            }
            if w.attempts == 0 || w.attempts > 20 {
                bail!("config: watch.notify.webhook.attempts must be between 1 and 20");
            }
        }
        if let Some(e) = &n.email {
            if !matches!(e.tls.as_str(), "starttls" | "tls" | "none") {
                bail!("config: watch.notify.email.tls must be starttls, tls or none");
            }
            if e.to.is_empty() {
                bail!("config: watch.notify.email.to must name at least one address");
            }
            if e.attempts == 0 || e.attempts > 20 {
                bail!("config: watch.notify.email.attempts must be between 1 and 20");
            }
            if e.username.is_some() != e.password.is_some() {
                bail!("config: watch.notify.email needs both username and password, or neither");
            }
        }
        Ok(())
    }

    /// The notifier's configuration, with files read.
    pub fn notify_config(&self, base_url: &str) -> anyhow::Result<mcr_notify::NotifyConfig> {
        let n = &self.notify;
        let webhook = n
            .webhook
            .as_ref()
            .map(|w| -> anyhow::Result<_> {
                Ok(mcr_notify::WebhookConfig {
                    url: w.url.clone(),
                    secret: w.secret.clone(),
                    ca: w.ca.clone(),
                    attempts: w.attempts,
                    first_backoff: std::time::Duration::from_millis(500),
                })
            })
            .transpose()?;
        let email = n
            .email
            .as_ref()
            .map(|e| -> anyhow::Result<_> {
                Ok(mcr_notify::EmailConfig {
                    host: e.host.clone(),
                    port: e.port,
                    tls: match e.tls.as_str() {
                        "tls" => mcr_notify::SmtpTls::Implicit,
                        "none" => mcr_notify::SmtpTls::None,
                        _ => mcr_notify::SmtpTls::StartTls,
                    },
                    ca: e.ca.clone(),
                    credentials: e.username.clone().zip(e.password.clone()),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    attempts: e.attempts,
                    first_backoff: std::time::Duration::from_millis(500),
                })
            })
            .transpose()?;
        let config = mcr_notify::NotifyConfig {
            review_url: n
                .review_url
                .clone()
                .unwrap_or_else(|| format!("{}/app/review", base_url.trim_end_matches('/'))),
            batch: std::time::Duration::from_secs(n.batch_seconds),
            webhook,
            email,
        };
        config
            .check()
            .map_err(|e| anyhow::anyhow!("config: watch.notify: {e}"))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> anyhow::Result<WatchSettings> {
        let s: WatchSettings = toml::from_str(toml_text)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn settings_are_checked_with_words_that_say_where() {
        let ok = parse("flag_patients = 3\nrefuse_patients = 5\n[hours]\ngp-practice = \"Mon-Sat 08:00-18:30\"\n")
            .expect("valid");
        let c = ok.config().expect("config");
        assert_eq!((c.flag_patients, c.refuse_patients), (3, 5));
        assert_eq!(
            c.hours[&OrgKind::GpPractice].as_str(),
            "Mon-Sat 08:00-18:30"
        );
        for (text, says) in [
            ("[hours]\nacute-trust = \"Mon-Fri 07:00-19:00\"", "emergency setting"),
            ("[hours]\nspaceship = \"Mon-Fri 07:00-19:00\"", "unknown organisation kind"),
            ("[hours]\ngp-practice = \"weekdays\"", "watch.hours.gp-practice"),
            ("flag_patients = 10\nrefuse_patients = 5", "refuse_patients"),
            ("window_minutes = 0", "window_minutes"),
            ("[notify]\nbatch_seconds = 0", "batch_seconds"),
            (
                "[notify.webhook]\nurl = \"https://h.example/x\"\nsecret = \"short\"",
                "at least 16",
            ),
            (
                "[notify.email]\nhost = \"smtp.example.org\"\nfrom = \"a@example.org\"\nto = []",
                "at least one address",
            ),
            (
                "[notify.email]\nhost = \"smtp.example.org\"\ntls = \"maybe\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]",
                "starttls, tls or none",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn plain_smtp_to_another_machine_is_refused_when_the_notifier_is_built() {
        let s = parse(
            "[notify.email]\nhost = \"smtp.example.org\"\ntls = \"none\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]",
        )
        .expect("parses");
        let e = s.notify_config("https://mcr.example").expect_err("plain");
        assert!(e.to_string().contains("this machine"), "{e}");
        let s =
            parse("[notify.webhook]\nurl = \"https://h.example/x\"\nsecret = \"0123456789abcdef\"")
                .expect("parses");
        let c = s.notify_config("https://mcr.example/").expect("config");
        assert_eq!(c.review_url, "https://mcr.example/app/review");
    }
}
