//! The demo's acute trust patient administration system: it sends HL7 v2 ADT messages to the
//! gateway's ADT listener over MLLP, as a real one would, and insists on an AA for each.

use anyhow::Context;
use chrono::{DateTime, Utc};
use mcr_domain::NhsNumber;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// One MLLP connection from the sending facility `facility`.
#[derive(Debug)]
pub struct Feed {
    stream: TcpStream,
    facility: String,
    next: u64,
    /// MSH-7 of every message: when the demo sends them.
    sent_at: DateTime<Utc>,
}

/// What PV1 (and PV2) say about the visit.
#[derive(Debug, Clone, Copy)]
struct Visit<'a> {
    class: &'a str,
    visit: &'a str,
    admit: Option<DateTime<Utc>>,
    discharge: Option<DateTime<Utc>>,
    expected: Option<DateTime<Utc>>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

impl Feed {
    pub async fn connect(
        addr: SocketAddr,
        facility: &str,
        sent_at: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the ADT listener at {addr}"))?;
        Ok(Self {
            stream,
            facility: facility.to_owned(),
            next: 1,
            sent_at,
        })
    }

    /// An ADT message for `nhs` with the visit's PV1 class, number and times; the NHS number
    /// in PID-3.
    fn message(&mut self, trigger: &str, nhs: &NhsNumber, v: Visit<'_>) -> String {
        let Visit {
            class,
            visit,
            admit,
            discharge,
            expected,
        } = v;
        let control = format!("DEMO{:06}", self.next);
        self.next += 1;
        let mut pv1 = vec![String::new(); 46];
        pv1[1] = "1".into();
        pv1[2] = class.into();
        pv1[3] = "WARD7B^^^LISTER".into();
        pv1[10] = "MED".into();
        pv1[19] = visit.into();
        pv1[44] = admit.map(ts).unwrap_or_default();
        pv1[45] = discharge.map(ts).unwrap_or_default();
        let pv2 = expected.map_or_else(String::new, |e| format!("PV2||||||||{}\r", ts(e)));
        format!(
            "MSH|^~\\&|PAS|{f}|MCR|MCR01|{now}||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
             EVN|{trigger}|{now}\r\
             PID|1||{nhs}^^^NHS^NH||DEMO^PATIENT\r\
             PV1|{pv1}\r{pv2}",
            f = self.facility,
            now = ts(self.sent_at),
            pv1 = pv1[1..].join("|"),
        )
    }

    async fn send(&mut self, message: String) -> anyhow::Result<()> {
        let answer = mcr_adt::listener::send_framed(&mut self.stream, &message)
            .await
            .context("sending a demo ADT message")?;
        let ack = mcr_adt::parse::parse(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
        if ack.get("MSA", 1, 1).as_deref() != Some("AA") {
            anyhow::bail!(
                "the ADT listener refused a demo message: {}",
                ack.get("MSA", 3, 1).unwrap_or_default()
            );
        }
        Ok(())
    }

    fn visit(nhs: &NhsNumber, at: DateTime<Utc>) -> String {
        format!("V{}{}", nhs.as_str(), at.format("%Y%m%d"))
    }

    /// A01: admitted at `at` (the visit stays open until a discharge).
    pub async fn admit(&mut self, nhs: &NhsNumber, at: DateTime<Utc>) -> anyhow::Result<()> {
        let visit = Self::visit(nhs, at);
        let m = self.message(
            "A01",
            nhs,
            Visit {
                class: "I",
                visit: &visit,
                admit: Some(at),
                discharge: None,
                expected: None,
            },
        );
        self.send(m).await
    }

    /// A03 for the admission at `admitted`: discharged at `at`.
    pub async fn discharge(
        &mut self,
        nhs: &NhsNumber,
        admitted: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let visit = Self::visit(nhs, admitted);
        let m = self.message(
            "A03",
            nhs,
            Visit {
                class: "I",
                visit: &visit,
                admit: Some(admitted),
                discharge: Some(at),
                expected: None,
            },
        );
        self.send(m).await
    }

    /// A04: an outpatient or emergency attendance at `at`, finished the same day.
    pub async fn attendance(&mut self, nhs: &NhsNumber, at: DateTime<Utc>) -> anyhow::Result<()> {
        let visit = Self::visit(nhs, at);
        let end = at + chrono::Duration::hours(3);
        let m = self.message(
            "A04",
            nhs,
            Visit {
                class: "O",
                visit: &visit,
                admit: Some(at),
                discharge: Some(end),
                expected: None,
            },
        );
        self.send(m).await
    }

    /// A05: pre-admitted, expected on `at`.
    pub async fn pre_admit(&mut self, nhs: &NhsNumber, at: DateTime<Utc>) -> anyhow::Result<()> {
        let visit = Self::visit(nhs, at);
        let m = self.message(
            "A05",
            nhs,
            Visit {
                class: "P",
                visit: &visit,
                admit: None,
                discharge: None,
                expected: Some(at),
            },
        );
        self.send(m).await
    }
}
