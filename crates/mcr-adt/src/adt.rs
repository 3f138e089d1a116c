//! What an ADT message means for care relationships, and the ACK that answers it.
//!
//! Read: MSH (sender, type, control id, version), EVN (when), PID-3 (the NHS number: the
//! identifier with type `NH` or assigning authority `NHS`), PV1-2 class, PV1-3 location (the
//! ward), PV1-10 hospital service, PV1-19 visit number, PV1-44/45 admit and discharge times,
//! PV2-8 expected admit time, MRG-1 (the merged patient's NHS number). Nothing else is read:
//! no diagnosis, no allergy, no name.

use crate::parse::{parse, Message, Separators};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use mcr_domain::NhsNumber;
use mcr_gateway::CareEventAction;

/// How a message is answered (MSA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted.
    Aa,
    /// Error: the message was understood but could not be applied.
    Ae,
    /// Rejected: the message is not one this listener takes (version, type, sender, framing).
    Ar,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Aa => "AA",
            AckCode::Ae => "AE",
            AckCode::Ar => "AR",
        }
    }
}

/// What the envelope (MSH) says, as far as it could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    pub message_type: Option<String>,
    pub trigger: Option<String>,
    pub control_id: Option<String>,
    pub processing_id: Option<String>,
    pub version: Option<String>,
    pub separators: Separators,
}

impl Envelope {
    /// `ADT^A01` (or what could be read of it).
    pub fn type_label(&self) -> Option<String> {
        match (&self.message_type, &self.trigger) {
            (Some(m), Some(t)) => Some(format!("{m}^{t}")),
            (Some(m), None) => Some(m.clone()),
            _ => None,
        }
    }
}

/// A refusal: how it is answered and why, in words for the sender's interface team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: AckCode,
    /// HL7 table 0357 error code for ERR-3 (e.g. 100 segment sequence error, 101 required
    /// field missing, 102 data type error, 200 unsupported message type, 203 unsupported
    /// version id, 204 unknown key identifier, 207 application internal error).
    pub hl7_error: u16,
    pub reason: String,
}

impl Refusal {
    pub fn ae(hl7_error: u16, reason: impl Into<String>) -> Self {
        Self {
            code: AckCode::Ae,
            hl7_error,
            reason: reason.into(),
        }
    }

    pub fn ar(hl7_error: u16, reason: impl Into<String>) -> Self {
        Self {
            code: AckCode::Ar,
            hl7_error,
            reason: reason.into(),
        }
    }
}

/// One ADT message, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtMessage {
    pub envelope: Envelope,
    pub nhs_number: NhsNumber,
    /// The visit number (PV1-19), the event's id in its source; empty for person-level
    /// messages (A28, A31, A40).
    pub visit: String,
    pub action: Interpreted,
}

/// What the message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreted {
    /// A change to a care event.
    Event(CareEventAction),
    /// A person added or updated (A28, A31): no care event.
    Person,
}

/// The trigger events taken.
pub const TRIGGERS: [&str; 11] = [
    "A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A31", "A40",
];

/// HL7 versions taken: 2.4 and later.
fn version_ok(v: &str) -> bool {
    let mut parts = v.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(2), Some(m)) if m >= 4)
}

/// An HL7 `DTM`/`TS`: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`, at least to the day. Without an
/// offset it is read as UTC (the region's feeds are configured to send UTC or an offset).
pub fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (body, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let body = body.split('.').next().unwrap_or(body);
    if !body.chars().all(|c| c.is_ascii_digit()) || body.len() < 8 || body.len() % 2 != 0 {
        return None;
    }
    let padded = format!("{body:0<14}");
    let date = NaiveDate::parse_from_str(padded.get(..8)?, "%Y%m%d").ok()?;
    let time = chrono::NaiveTime::parse_from_str(padded.get(8..14)?, "%H%M%S").ok()?;
    let naive = NaiveDateTime::new(date, time);
    match offset {
        None => Some(Utc.from_utc_datetime(&naive)),
        Some(o) => {
            if o.len() != 5 || !o[1..].chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let hours: i32 = o[1..3].parse().ok()?;
            let mins: i32 = o[3..5].parse().ok()?;
            let secs = (hours * 3600 + mins * 60) * if o.starts_with('-') { -1 } else { 1 };
            let tz = chrono::FixedOffset::east_opt(secs)?;
            tz.from_local_datetime(&naive)
                .single()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

/// The envelope of a message, as far as it can be read (for the ACK and the held list).
pub fn envelope(m: &Message<'_>) -> Envelope {
    Envelope {
        sending_application: m.get("MSH", 3, 1),
        sending_facility: m.get("MSH", 4, 1),
        message_type: m.get("MSH", 9, 1),
        trigger: m.get("MSH", 9, 2),
        control_id: m.get("MSH", 10, 1),
        processing_id: m.get("MSH", 11, 1),
        version: m.get("MSH", 12, 1),
        separators: m.separators,
    }
}

/// The NHS number among PID-3's identifiers: type `NH`, or assigning authority `NHS`.
fn nhs_number(m: &Message<'_>) -> Result<NhsNumber, Refusal> {
    let ids = m.repetitions("PID", 3);
    if ids.is_empty() {
        return Err(Refusal::ae(101, "PID-3 (patient identifiers) is missing"));
    }
    let id = ids
        .iter()
        .find(|id| {
            m.component(id, 5).as_deref() == Some("NH")
                || m.component(id, 4).as_deref() == Some("NHS")
        })
        .ok_or_else(|| {
            Refusal::ae(
                101,
                "PID-3 has no NHS number (an identifier of type NH or assigning authority NHS)",
            )
        })?;
    let value = m.component(id, 1).unwrap_or_default();
    NhsNumber::parse(&value).map_err(|_| {
        Refusal::ae(
            102,
            "PID-3 NHS number is not a valid NHS number (10 digits with a correct check digit)",
        )
    })
}

fn time_of(
    m: &Message<'_>,
    seg: &str,
    n: usize,
    name: &str,
) -> Result<Option<DateTime<Utc>>, Refusal> {
    match m.get(seg, n, 1) {
        None => Ok(None),
        Some(v) => timestamp(&v)
            .map(Some)
            .ok_or_else(|| Refusal::ae(102, format!("{seg}-{n} ({name}) is not an HL7 date/time"))),
    }
}

/// When the event happened: the given field, else EVN-6 (occurred), else EVN-2 (recorded).
fn when(m: &Message<'_>, seg: &str, n: usize, name: &str) -> Result<DateTime<Utc>, Refusal> {
    if let Some(t) = time_of(m, seg, n, name)? {
        return Ok(t);
    }
    if let Some(t) = time_of(m, "EVN", 6, "event occurred")? {
        return Ok(t);
    }
    time_of(m, "EVN", 2, "recorded date/time")?.ok_or_else(|| {
        Refusal::ae(
            101,
            format!("{seg}-{n} ({name}) is missing, and EVN-6 and EVN-2 give no time either"),
        )
    })
}

/// Read a message's text into what it asks for, or the refusal to answer with.
pub fn interpret(text: &str) -> (Envelope, Result<AdtMessage, Refusal>) {
    let m = match parse(text) {
        Ok(m) => m,
        Err(e) => {
            return (
                Envelope::default(),
                Err(Refusal::ar(100, format!("the message cannot be read: {e}"))),
            )
        }
    };
    let env = envelope(&m);
    let result = read(&m, &env);
    (env, result)
}

fn read(m: &Message<'_>, env: &Envelope) -> Result<AdtMessage, Refusal> {
    let control = env.control_id.as_deref().unwrap_or_default();
    if control.is_empty() {
        return Err(Refusal::ar(101, "MSH-10 (message control id) is missing"));
    }
    match env.version.as_deref() {
        None => return Err(Refusal::ar(101, "MSH-12 (version id) is missing")),
        Some(v) if !version_ok(v) => {
            return Err(Refusal::ar(
                203,
                format!("HL7 version {v} is not supported: send version 2.4 or later"),
            ))
        }
        Some(_) => {}
    }
    if env.message_type.as_deref() != Some("ADT") {
        return Err(Refusal::ar(
            200,
            "only ADT messages are taken on this listener (MSH-9)",
        ));
    }
    let trigger = env.trigger.clone().unwrap_or_default();
    if !TRIGGERS.contains(&trigger.as_str()) {
        return Err(Refusal::ar(
            201,
            format!(
                "ADT trigger event `{trigger}` is not taken; taken: {}",
                TRIGGERS.join(" ")
            ),
        ));
    }
    if m.segment("PID").is_none() {
        return Err(Refusal::ae(100, "the PID segment is missing"));
    }
    let nhs = nhs_number(m)?;
    let person = matches!(trigger.as_str(), "A28" | "A31" | "A40");
    let visit = if person {
        String::new()
    } else {
        if m.segment("PV1").is_none() {
            return Err(Refusal::ae(100, "the PV1 segment is missing"));
        }
        m.get("PV1", 19, 1).ok_or_else(|| {
            Refusal::ae(
                101,
                "PV1-19 (visit number) is missing: it identifies the admission for later messages",
            )
        })?
    };
    let ward = m.get("PV1", 3, 1).map(|w| clip(&w));
    let service = m.get("PV1", 10, 1).map(|s| clip(&s));
    let inpatient = m.get("PV1", 2, 1).as_deref() == Some("I");
    let discharged = time_of(m, "PV1", 45, "discharge date/time")?;
    let action = match trigger.as_str() {
        "A01" | "A02" => Interpreted::Event(CareEventAction::Record {
            kind: "admission",
            ward,
            team: None,
            service,
            start: when(m, "PV1", 44, "admit date/time")?,
            end: None,
        }),
        "A04" => Interpreted::Event(CareEventAction::Record {
            kind: "encounter",
            ward,
            team: None,
            service,
            start: when(m, "PV1", 44, "admit date/time")?,
            end: discharged,
        }),
        "A05" => Interpreted::Event(CareEventAction::Record {
            kind: "appointment",
            ward,
            team: None,
            service,
            start: match time_of(m, "PV2", 8, "expected admit date/time")? {
                Some(t) => t,
                None => when(m, "PV1", 44, "admit date/time")?,
            },
            end: None,
        }),
        "A08" => Interpreted::Event(CareEventAction::Record {
            kind: if inpatient { "admission" } else { "encounter" },
            ward,
            team: None,
            service,
            start: when(m, "PV1", 44, "admit date/time")?,
            end: discharged,
        }),
        "A03" => Interpreted::Event(CareEventAction::End {
            kind: if inpatient || m.get("PV1", 2, 1).is_none() {
                "admission"
            } else {
                "encounter"
            },
            ward,
            service,
            start: time_of(m, "PV1", 44, "admit date/time")?,
            end: when(m, "PV1", 45, "discharge date/time")?,
        }),
        "A11" => Interpreted::Event(CareEventAction::Cancel),
        "A13" => Interpreted::Event(CareEventAction::Reopen),
        "A40" => {
            if m.segment("MRG").is_none() {
                return Err(Refusal::ae(100, "A40 needs an MRG segment"));
            }
            let prior = m
                .repetitions("MRG", 1)
                .into_iter()
                .find(|id| {
                    m.component(id, 5).as_deref() == Some("NH")
                        || m.component(id, 4).as_deref() == Some("NHS")
                })
                .and_then(|id| m.component(id, 1))
                .ok_or_else(|| Refusal::ae(101, "MRG-1 has no NHS number of the merged patient"))?;
            let from = NhsNumber::parse(&prior)
                .map_err(|_| Refusal::ae(102, "MRG-1 NHS number is not a valid NHS number"))?;
            if from == nhs {
                return Err(Refusal::ae(102, "MRG-1 names the same patient as PID-3"));
            }
            Interpreted::Event(CareEventAction::Merge { from })
        }
        _ => Interpreted::Person,
    };
    Ok(AdtMessage {
        envelope: env.clone(),
        nhs_number: nhs,
        visit,
        action,
    })
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// The ACK for a message: MSH (sender and receiver swapped), MSA (code, the message's
/// MSH-10, the reason), and ERR when refused.
pub fn ack(
    env: &Envelope,
    receiver_app: &str,
    receiver_facility: &str,
    now: DateTime<Utc>,
    own_control_id: &str,
    refusal: Option<&Refusal>,
) -> String {
    let sep = Separators::default();
    let e = |s: &str| sep.escape(s);
    let code = refusal.map_or(AckCode::Aa, |r| r.code);
    let trigger = env.trigger.as_deref().unwrap_or_default();
    let version = env
        .version
        .as_deref()
        .filter(|v| version_ok(v))
        .unwrap_or("2.5.1");
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^{}^ACK|{}|{}|{}\r",
        e(receiver_app),
        e(receiver_facility),
        e(env.sending_application.as_deref().unwrap_or_default()),
        e(env.sending_facility.as_deref().unwrap_or_default()),
        now.format("%Y%m%d%H%M%S+0000"),
        e(trigger),
        e(own_control_id),
        e(env.processing_id.as_deref().unwrap_or("P")),
        e(version),
    );
    out.push_str(&format!(
        "MSA|{}|{}",
        code.as_str(),
        e(env.control_id.as_deref().unwrap_or_default())
    ));
    if let Some(r) = refusal {
        out.push_str(&format!("|{}\r", e(&r.reason)));
        out.push_str(&format!(
            "ERR|||{}^{}^HL70357|E||||{}\r",
            r.hl7_error,
            e(hl7_error_text(r.hl7_error)),
            e(&r.reason)
        ));
    } else {
        out.push('\r');
    }
    out
}

fn hl7_error_text(code: u16) -> &'static str {
    match code {
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        206 => "Application record locked",
        207 => "Application internal error",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(trigger: &str, version: &str, pid3: &str, pv1: &str) -> String {
        format!(
            "MSH|^~\\&|PAS|RWH|MCR|MCR01|20261130101500||ADT^{trigger}^ADT_A01|CTRL1|P|{version}\r\
             EVN|{trigger}|20261130101500\r\
             PID|1||{pid3}||DOE^JANE\r\
             {pv1}\r"
        )
    }

    const NHS: &str = "9434765919^^^NHS^NH";

    #[test]
    fn an_admission_reads_ward_service_visit_and_time() {
        let (env, r) = interpret(&msg(
            "A01",
            "2.4",
            NHS,
            "PV1|1|I|WARD7B^BED2^^LISTER|||||||180|||||||||V123|||||||||||||||||||||||||20261130093000",
        ));
        let m = r.expect("accepted");
        assert_eq!(env.control_id.as_deref(), Some("CTRL1"));
        assert_eq!(m.visit, "V123");
        assert_eq!(m.nhs_number.as_str(), "9434765919");
        match m.action {
            Interpreted::Event(CareEventAction::Record {
                kind,
                ward,
                service,
                start,
                end,
                ..
            }) => {
                assert_eq!(kind, "admission");
                assert_eq!(ward.as_deref(), Some("WARD7B"));
                assert_eq!(service.as_deref(), Some("180"));
                assert_eq!(start, timestamp("20261130093000").expect("ts"));
                assert_eq!(end, None);
            }
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn a_pre_admission_is_an_appointment_on_the_expected_day() {
        let text =
            msg("A05", "2.5", NHS, "PV1|1|P|W||||||||||||||||V9") + "PV2||||||||20261210090000";
        let (_, r) = interpret(&text);
        match r.expect("accepted").action {
            Interpreted::Event(CareEventAction::Record { kind, start, .. }) => {
                assert_eq!(kind, "appointment");
                assert_eq!(start, timestamp("20261210090000").expect("ts"));
            }
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn refusals_say_why_and_whether_error_or_reject() {
        let pv1 = "PV1|1|I|W||||||||||||||||||V1";
        let (_, r) = interpret(&msg("A01", "2.3", NHS, pv1));
        let r = r.expect_err("old version");
        assert_eq!((r.code, r.hl7_error), (AckCode::Ar, 203));
        assert!(r.reason.contains("2.3"), "{}", r.reason);
        let (_, r) = interpret(&msg("A99", "2.5", NHS, pv1));
        assert_eq!(r.expect_err("trigger").code, AckCode::Ar);
        let (_, r) = interpret(&msg("A01", "2.5", "12345^^^HOSP^MR", pv1));
        let r = r.expect_err("no NHS number");
        assert_eq!(r.code, AckCode::Ae);
        assert!(r.reason.contains("PID-3"), "{}", r.reason);
        let (_, r) = interpret(&msg("A01", "2.5", "9434765918^^^NHS^NH", pv1));
        assert!(r.expect_err("check digit").reason.contains("check digit"));
        let (_, r) = interpret(&msg("A01", "2.5", NHS, "PV1|1|I|W"));
        assert!(r.expect_err("no visit").reason.contains("PV1-19"));
        let (_, r) = interpret("MSH|^~");
        assert_eq!(r.expect_err("unreadable").code, AckCode::Ar);
    }

    #[test]
    fn the_ack_echoes_the_control_id_and_carries_the_reason() {
        let (env, _) = interpret(&msg("A01", "2.5.1", NHS, "PV1|1|I"));
        let now = Utc
            .with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
            .single()
            .expect("t");
        let ok = ack(&env, "MCR", "MCR01", now, "ACK1", None);
        assert!(ok.starts_with(
            "MSH|^~\\&|MCR|MCR01|PAS|RWH|20261130100000+0000||ACK^A01^ACK|ACK1|P|2.5.1\r"
        ));
        assert!(ok.ends_with("MSA|AA|CTRL1\r"), "{ok:?}");
        let refusal = Refusal::ae(204, "no patient with NHS number | known");
        let bad = ack(&env, "MCR", "MCR01", now, "ACK2", Some(&refusal));
        let parsed = parse(&bad).expect("our ACK parses");
        assert_eq!(parsed.get("MSA", 1, 1).as_deref(), Some("AE"));
        assert_eq!(parsed.get("MSA", 2, 1).as_deref(), Some("CTRL1"));
        assert_eq!(
            parsed.get("MSA", 3, 1).as_deref(),
            Some("no patient with NHS number | known")
        );
        assert_eq!(parsed.get("ERR", 3, 1).as_deref(), Some("204"));
        assert_eq!(parsed.get("ERR", 4, 1).as_deref(), Some("E"));
    }

    #[test]
    fn timestamps_take_the_precisions_and_offsets_hl7_allows() {
        let t = |s| timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(t("20261130").as_deref(), Some("2026-11-30T00:00:00+00:00"));
        assert_eq!(
            t("202611301015").as_deref(),
            Some("2026-11-30T10:15:00+00:00")
        );
        assert_eq!(
            t("20261130101530.1234+0100").as_deref(),
            Some("2026-11-30T09:15:30+00:00")
        );
        assert_eq!(t("2026113"), None);
        assert_eq!(t("20261340"), None);
        assert_eq!(t("2026-11-30"), None);
    }
}
