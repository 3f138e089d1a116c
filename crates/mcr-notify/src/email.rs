//! The email channel: one plain-text message per batch over SMTP (STARTTLS, implicit TLS, or
//! plain on loopback only), to the configured privacy officers.
//!
//! Email is not a secure channel: the message names the rule, the user and the count and links
//! to the review queue ("3 flags, see the review queue"); never an NHS number, a patient's name
//! or the evidence's details.

use crate::Channel;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mcr_gateway::FlagNotice;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::time::Duration;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only to a relay on this machine (loopback).
    None,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The CA (PEM) the server's certificate must chain to; none: the public web's roots.
    pub ca: Option<PathBuf>,
    pub credentials: Option<(String, SecretString)>,
    pub from: String,
    pub to: Vec<String>,
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl EmailConfig {
    pub fn check(&self) -> Result<(), String> {
        self.mailboxes().map(|_| ())?;
        if self.attempts == 0 {
            return Err("email needs at least one attempt".into());
        }
        if self.tls == SmtpTls::None && !is_loopback(&self.host) {
            return Err(format!(
                "email without TLS is allowed only to a relay on this machine, not `{}`",
                self.host
            ));
        }
        Ok(())
    }

    fn mailboxes(&self) -> Result<(Mailbox, Vec<Mailbox>), String> {
        let from = self
            .from
            .parse::<Mailbox>()
            .map_err(|_| format!("the email sender `{}` is not an address", self.from))?;
        if self.to.is_empty() {
            return Err("email needs at least one recipient".into());
        }
        let to = self
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|_| format!("the email recipient `{t}` is not an address"))
            })
            .collect::<Result<_, _>>()?;
        Ok((from, to))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The subject and body of the message for a batch.
pub fn message_text(batch: &[FlagNotice], review_url: &str) -> (String, String) {
    let summary = format!("{}, see the review queue", crate::flags_word(batch.len()));
    let mut body = format!(
        "My Care Record's watch on record views raised {}.\r\n\r\n",
        crate::flags_word(batch.len())
    );
    for n in batch {
        body.push_str("- ");
        body.push_str(&crate::flag_line(n));
        body.push_str("\r\n");
    }
    body.push_str(&format!(
        "\r\nReview them in the access review queue: {review_url}\r\n\r\nThis message names no patient: the review queue shows the evidence.\r\n"
    ));
    (format!("My Care Record: {summary}"), body)
}

#[derive(Debug)]
pub(crate) struct Email {
    config: EmailConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub(crate) fn new(config: EmailConfig) -> Result<Self, String> {
        config.check()?;
        let (from, to) = config.mailboxes()?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(Duration::from_secs(15)));
        if config.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca {
                let pem = std::fs::read(path).map_err(|e| {
                    format!(
                        "the email CA certificate {} cannot be read: {e}",
                        path.display()
                    )
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|_| {
                    format!("the email CA certificate {} is not PEM", path.display())
                })?;
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("TLS for email: {e}"))?;
            builder = builder.tls(match config.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            config,
            from,
            to,
        })
    }
}

#[async_trait::async_trait]
impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn attempts(&self) -> (u32, Duration) {
        (self.config.attempts, self.config.first_backoff)
    }

    async fn send(&self, batch: &[FlagNotice], review_url: &str) -> Result<(), String> {
        let (subject, body) = message_text(batch, review_url);
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("the message could not be built: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            // The SMTP error says what the server said, which holds no patient data.
            .map_err(|e| format!("SMTP: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_rule_user_count_and_link_only() {
        let mut second = crate::tests::notice(43);
        second.rule = mcr_gateway::WatchRule::ProtectedPerson;
        second.count = None;
        second.evidence = "The patient is on the protected person list (staff).".into();
        let (subject, body) = message_text(
            &[crate::tests::notice(42), second],
            "https://mcr.example/app/review",
        );
        assert_eq!(subject, "My Care Record: 2 flags, see the review queue");
        assert!(body.contains("Many patients in a short time: Dr Asha Patel (gp.patel), Bridge Street Surgery (A81001) (31 patients), audit record 42"), "{body}");
        assert!(
            body.contains("Patient on the protected person list: Dr Asha Patel"),
            "{body}"
        );
        assert!(body.contains("https://mcr.example/app/review"));
        assert!(
            !body.contains("staff)"),
            "the evidence stays in the queue: {body}"
        );
    }

    #[test]
    fn plain_smtp_only_on_loopback_and_addresses_are_checked() {
        let c = EmailConfig {
            host: "smtp.example.org".into(),
            port: 25,
            tls: SmtpTls::None,
            ca: None,
            credentials: None,
            from: "mcr@example.org".into(),
            to: vec!["po@example.org".into()],
            attempts: 3,
            first_backoff: Duration::from_millis(10),
        };
        assert!(c.check().expect_err("plain").contains("this machine"));
        let local = EmailConfig {
            host: "127.0.0.1".into(),
            ..c.clone()
        };
        assert!(local.check().is_ok());
        let bad = EmailConfig {
            to: vec!["not an address".into()],
            ..local
        };
        assert!(bad.check().expect_err("bad").contains("not an address"));
    }
}
