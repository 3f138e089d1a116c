//! The patient matching review queue, for records staff and privacy officers: each pair of a
//! source record and an index patient side by side, field by field, with the score and what
//! held it back (possible twin, possible parent and child, too close to call, possible wrong
//! NHS number); link or not a match. Pairs with a local identity are listed apart and decided
//! in `local_matching`. One gateway call per page; the gateway decides who may look and audits
//! every read and decision.

use super::forms::clean;
use super::text::human_day;
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::{NhsNumber, SourceId};
use mcr_gateway::{GatewayError, LocalMatchPair, MatchPair, MatchVerdict, UnreadableRecords};
use serde::Deserialize;

/// One field of a pair: the source record's value, the index patient's, and how they compare.
pub(crate) struct FieldRow {
    pub field: &'static str,
    pub record: String,
    pub index: String,
    pub agreement: String,
    /// `green` (agrees), `yellow` (partly), `red` (disagrees), `grey` (missing).
    pub tag: &'static str,
}

pub(crate) struct PairView {
    pub id: String,
    pub source: String,
    pub source_name: String,
    pub local_id: String,
    pub nhs: String,
    pub nhs_formatted: String,
    pub kind: String,
    pub score: String,
    pub why: String,
    pub fields: Vec<FieldRow>,
}

/// A pair of a source record and a local identity: labelled as a local identity (its own
/// identifier, `L` and nine digits), never as an NHS number.
pub(crate) struct LocalPairView {
    pub id: String,
    pub source: String,
    pub source_name: String,
    pub local_id: String,
    pub person: String,
    pub score: String,
    pub why: String,
    pub fields: Vec<FieldRow>,
}

/// One record a source sent that could not be read.
pub(crate) struct UnreadableRow {
    pub local_id: String,
    pub why: &'static str,
    pub seen: String,
}

/// One source's records that could not be read.
pub(crate) struct UnreadableView {
    pub source: String,
    pub source_name: String,
    pub records: Vec<UnreadableRow>,
    pub shown: u64,
    pub total: u64,
}

fn unreadable_view(u: &UnreadableRecords) -> UnreadableView {
    UnreadableView {
        source: u.source.to_string(),
        source_name: u.source_name.clone(),
        records: u
            .records
            .iter()
            .map(|r| UnreadableRow {
                local_id: r.local_id.clone(),
                why: match r.reason.as_str() {
                    "no-birth-date" => "No date of birth",
                    "birth-date-unreadable" => "Date of birth not a whole date",
                    "no-name" => "No name",
                    _ => "Could not be read",
                },
                seen: human_day(r.seen_at.date_naive()),
            })
            .collect(),
        shown: u64::try_from(u.records.len()).unwrap_or(u64::MAX),
        total: u.total,
    }
}

#[derive(Template)]
#[template(path = "app/matching.html")]
pub(crate) struct MatchingPage {
    pub layout: Layout,
    pub pairs: Vec<PairView>,
    pub local: Vec<LocalPairView>,
    pub unreadable: Vec<UnreadableView>,
    pub unreadable_total: u64,
    pub done: Option<i64>,
    pub error: Option<String>,
}

fn level_tag(level: &str) -> &'static str {
    match level {
        "exact" | "agree" | "full" => "green",
        "missing" => "grey",
        "differs" => "red",
        _ => "yellow",
    }
}

/// `day-month-swapped` reads `Day month swapped` (a tag, not a sentence: no full stop).
fn level_text(level: &str) -> String {
    sentence_case(&level.replace('-', " "))
        .trim_end_matches('.')
        .to_owned()
}

fn why(kind: &str, guard: Option<&str>) -> String {
    if kind == "possible-wrong-nhs-number" {
        return "Possible wrong NHS number: the NHS numbers agree but the person does not. The record is not linked by it.".into();
    }
    if kind == "unmerged" {
        return "Linked while two index persons were merged; the merge was undone, so which person this record belongs to is not known. Never linked automatically.".into();
    }
    if kind == "pds-review" {
        return "Traced in the Personal Demographics Service: one patient matched, but only partly (PDS's score is below the configured link score). Never linked automatically.".into();
    }
    match guard {
        Some("possible-twin") => "Possible twin: the same date of birth, in one family or at one address, but a different given name or sex. Never linked automatically.".into(),
        Some("possible-parent-child") => "Possible parent and child: the same name, dates of birth years apart. Never linked automatically.".into(),
        Some("ambiguous") => "Too close to call: more than one patient matches this record almost as well.".into(),
        _ => "The score is between the thresholds: neither clearly the same person nor clearly not.".into(),
    }
}

fn pair_view(p: &MatchPair) -> PairView {
    let c = &p.candidate;
    let i = p.patient.as_ref();
    let mut fields = demographic_rows(
        &c.agreement,
        Sides {
            family: Some(&c.family),
            given: Some(&c.given),
            birth_date: c.birth_date,
            gender: c.gender.as_deref(),
            postcode: c.postcode.as_deref(),
        },
        i.map(|p| Sides {
            family: Some(&p.family),
            given: Some(&p.given),
            birth_date: Some(p.birth_date),
            gender: p.gender.as_deref(),
            postcode: p.postcode.as_deref(),
        }),
        p.restricted,
    );
    fields.push(FieldRow {
        field: "NHS number",
        record: if c.kind == "possible-wrong-nhs-number" {
            c.nhs_number.formatted()
        } else {
            "Not recorded".into()
        },
        index: c.nhs_number.formatted(),
        agreement: level_text(agreement_level(&c.agreement, "nhs-number")),
        tag: level_tag(agreement_level(&c.agreement, "nhs-number")),
    });
    PairView {
        id: format!("{}-{}-{}", c.source, c.local_id, c.nhs_number)
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect(),
        source: c.source.to_string(),
        source_name: p.source_name.clone(),
        local_id: c.local_id.clone(),
        nhs: c.nhs_number.to_string(),
        nhs_formatted: c.nhs_number.formatted(),
        kind: c.kind.clone(),
        // PDS scores from 0 to 1; the index's are log2 odds.
        score: if c.kind == "pds-review" {
            format!("PDS {:.2}", c.score)
        } else {
            format!("{:.1}", c.score)
        },
        why: why(&c.kind, c.guard.as_deref()),
        fields,
    }
}

fn local_pair_view(p: &LocalMatchPair) -> LocalPairView {
    let c = &p.candidate;
    let l = p.person.as_ref();
    let fields = demographic_rows(
        &c.agreement,
        Sides {
            family: Some(&c.family),
            given: Some(&c.given),
            birth_date: c.birth_date,
            gender: c.gender.as_deref(),
            postcode: c.postcode.as_deref(),
        },
        l.map(|p| Sides {
            family: Some(&p.family),
            given: Some(&p.given),
            birth_date: Some(p.birth_date),
            gender: p.gender.as_deref(),
            postcode: p.postcode.as_deref(),
        }),
        false,
    );
    LocalPairView {
        id: format!("{}-{}-{}", c.source, c.local_id, c.person)
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect(),
        source: c.source.to_string(),
        source_name: p.source_name.clone(),
        local_id: c.local_id.clone(),
        person: c.person.to_string(),
        score: format!("{:.1}", c.score),
        why: why("review", c.guard.as_deref()),
        fields,
    }
}

/// The demographics one side of a pair is compared on.
struct Sides<'a> {
    family: Option<&'a str>,
    given: Option<&'a str>,
    birth_date: Option<chrono::NaiveDate>,
    gender: Option<&'a str>,
    postcode: Option<&'a str>,
}

/// The comparison level `agreement` (`key=level ...`) gives `key`; `missing` if none.
fn agreement_level<'a>(agreement: &'a str, key: &str) -> &'a str {
    agreement
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map_or("missing", |(_, v)| v)
}

/// A pair's demographics side by side, each row with how the two compared: the record's,
/// and the index's (or local identity's) if it is still held. A restricted patient's
/// postcodes are withheld on both sides.
fn demographic_rows(
    agreement: &str,
    record: Sides<'_>,
    held: Option<Sides<'_>>,
    restricted: bool,
) -> Vec<FieldRow> {
    let shown = |s: Option<&str>| {
        s.filter(|s| !s.is_empty())
            .map_or_else(|| "Not recorded".to_owned(), str::to_owned)
    };
    let h = held.as_ref();
    let row = |field, key: &str, record: String, index: String| FieldRow {
        field,
        record,
        index,
        agreement: level_text(agreement_level(agreement, key)),
        tag: level_tag(agreement_level(agreement, key)),
    };
    let day = |d: Option<chrono::NaiveDate>| d.map(human_day);
    vec![
        row(
            "Family name",
            "family",
            shown(record.family),
            shown(h.and_then(|p| p.family)),
        ),
        row(
            "Given names",
            "given",
            shown(record.given),
            shown(h.and_then(|p| p.given)),
        ),
        row(
            "Date of birth",
            "birth-date",
            shown(day(record.birth_date).as_deref()),
            shown(day(h.and_then(|p| p.birth_date)).as_deref()),
        ),
        row(
            "Sex",
            "sex",
            shown(record.gender),
            shown(h.and_then(|p| p.gender)),
        ),
        row(
            "Postcode",
            "postcode",
            withheld_if(restricted, || shown(record.postcode)),
            withheld_if(restricted, || shown(h.and_then(|p| p.postcode))),
        ),
        // Compared, never shown: how the two first lines compared is what the reviewer needs.
        row(
            "Address, first line",
            "address",
            withheld_if(restricted, || ADDRESS_NOT_SHOWN.into()),
            withheld_if(restricted, || ADDRESS_NOT_SHOWN.into()),
        ),
    ]
}

/// What a pair's address line says in place of the line: it is compared, never shown.
const ADDRESS_NOT_SHOWN: &str = "Compared, not shown";

fn withheld_if(restricted: bool, shown: impl FnOnce() -> String) -> String {
    if restricted {
        super::search::WITHHELD.into()
    } else {
        shown()
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct QueueQuery {
    #[serde(default)]
    done: Option<i64>,
}

pub(crate) async fn queue_page(
    state: &AppState,
    user: &PageUser,
    done: Option<i64>,
    error: Option<String>,
) -> Response {
    match state.gateway.match_queue(&user.0).await {
        Ok(queue) => render(
            if error.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            },
            &MatchingPage {
                layout: Layout::staff(user),
                pairs: queue.pairs.iter().map(pair_view).collect(),
                local: queue.local.iter().map(local_pair_view).collect(),
                unreadable: queue.unreadable.iter().map(unreadable_view).collect(),
                unreadable_total: queue.unreadable.iter().map(|u| u.total).sum(),
                done,
                error,
            },
        ),
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

pub(crate) async fn queue(
    user: PageUser,
    State(state): State<AppState>,
    Query(q): Query<QueueQuery>,
) -> Response {
    queue_page(&state, &user, q.done, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    local_id: String,
    #[serde(default)]
    nhs: String,
    /// `link` or `not-a-match`.
    #[serde(default)]
    verdict: String,
}

pub(crate) async fn decide(
    user: PageUser,
    State(state): State<AppState>,
    Form(form): Form<DecideForm>,
) -> Response {
    let parsed = (
        SourceId::parse(&clean(&form.source)),
        NhsNumber::parse(&clean(&form.nhs)),
        MatchVerdict::parse(&form.verdict),
    );
    let (Ok(source), Ok(nhs), Some(verdict)) = parsed else {
        return queue_page(
            &state,
            &user,
            None,
            Some("Choose a pair in the queue, then link it or mark it not a match".into()),
        )
        .await;
    };
    let local_id = clean(&form.local_id);
    match state
        .gateway
        .decide_match(&user.0, &source, &local_id, &nhs, verdict)
        .await
    {
        Ok(seq) => Redirect::to(&format!("/app/matching?done={seq}")).into_response(),
        Err(GatewayError::Invalid(m)) => {
            queue_page(&state, &user, None, Some(sentence_case(&m))).await
        }
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}
