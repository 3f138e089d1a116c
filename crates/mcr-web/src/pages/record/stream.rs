//! The record page sent in parts as the sources answer (chunked HTML: no JavaScript needed).
//!
//! 1. The opening, as soon as the view is decided and audited: the page's head and
//!    navigation, whose record this is (the index's name, date of birth and gender; never
//!    the address, which a source may yet say is restricted), "still asking: …", why the
//!    user may see it and the date filter.
//! 2. Each part of the record (the summary, each section's table, the results) in the page's
//!    order, once every source that may hold its sections has answered or passed its
//!    deadline, merged from all of them. A part waits for those above it: a slow source that
//!    may hold the alerts holds back everything below them. That keeps the page's reading
//!    order the order it is sent in.
//! 3. The close, once every source has answered: the sources' banner (who answered, who in
//!    part, who failed and why), the postcode, identity warnings, the glance, what was
//!    withheld, the parts not sent yet, and a last line saying the record is complete or
//!    what is missing. `.app-record` (app.css, CSS `order`) puts the banner back at the top.
//!
//! Whatever goes wrong after the opening is said in the page, never a page that looks
//! complete: items that reached a section after it was sent are counted (`late`), a failed
//! audit of the answers is said, and if the whole view never arrives the page ends with
//! "This record is incomplete".

use super::super::text::{
    clip, gender, human_date, list_name, neutralise_bidi, neutralise_bidi_part,
};
use super::sections::{Filter, LOWER, UPPER};
use super::summary::{self, SummaryBox};
use super::{failed, record_page, Results, SectionView};
use crate::pages::Layout;
use askama::Template;
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_domain::{MergedRecord, Section};
use mcr_gateway::{Arrival, Opening, StreamedView};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;

/// Where the opening's template ends and the rest of the page is written.
const PARTS_MARK: &str = "<!--mcr:parts-->";

/// The page's first part.
#[derive(Template)]
#[template(path = "app/record_open.html")]
struct RecordOpening {
    layout: Layout,
    nhs: String,
    nhs_formatted: String,
    patient: Option<IndexBanner>,
    /// The organisations being asked.
    asking: Vec<String>,
    basis: String,
    filter: Filter,
}

/// Whose record this is, as the index holds it.
struct IndexBanner {
    name: String,
    birth_date: String,
    gender: String,
}

/// One part of the record, sent once its sources have answered.
#[derive(Template)]
#[template(path = "app/record_part.html")]
struct RecordPart {
    nhs: String,
    /// Sources that have not answered in full (so far): an empty section may be incomplete.
    failed: Vec<String>,
    part: Part,
}

enum Part {
    Summary(Vec<SummaryBox>),
    Table(SectionView),
    Results(Results),
}

/// The page's end when the whole view never came.
#[derive(Template)]
#[template(path = "app/record_broken.html")]
struct RecordBroken {
    asking: Vec<String>,
    /// The parts already sent, by title.
    shown: Vec<&'static str>,
}

/// The page's parts below the opening, in its order.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Summary,
    Upper(usize),
    Results,
    Lower(usize),
}

const SLOTS: [Slot; 16] = [
    Slot::Summary,
    Slot::Upper(0),
    Slot::Upper(1),
    Slot::Upper(2),
    Slot::Upper(3),
    Slot::Upper(4),
    Slot::Upper(5),
    Slot::Upper(6),
    Slot::Upper(7),
    Slot::Results,
    Slot::Lower(0),
    Slot::Lower(1),
    Slot::Lower(2),
    Slot::Lower(3),
    Slot::Lower(4),
    Slot::Lower(5),
];

/// The sections of the summary's boxes.
const SUMMARY: [Section; 6] = [
    Section::Alerts,
    Section::LegalEndOfLife,
    Section::Allergies,
    Section::Medications,
    Section::Problems,
    Section::Encounters,
];

impl Slot {
    /// The sections this part shows.
    fn sections(self) -> &'static [Section] {
        match self {
            Slot::Summary => &SUMMARY,
            Slot::Upper(i) => UPPER
                .get(i)
                .map_or(&[], |t| std::slice::from_ref(&t.section)),
            Slot::Results => &[Section::Results],
            Slot::Lower(i) => LOWER
                .get(i)
                .map_or(&[], |t| std::slice::from_ref(&t.section)),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Slot::Summary => "the summary",
            Slot::Upper(i) => UPPER
                .get(i)
                .map_or("", |t| t.title.unwrap_or_else(|| t.section.title())),
            Slot::Results => Section::Results.title(),
            Slot::Lower(i) => LOWER
                .get(i)
                .map_or("", |t| t.title.unwrap_or_else(|| t.section.title())),
        }
    }

    /// This part as `f` lists it from `r`.
    fn part(self, r: &MergedRecord, f: &Filter) -> Part {
        match self {
            Slot::Summary => Part::Summary(summary::boxes(r)),
            Slot::Upper(i) => Part::Table(UPPER[i % UPPER.len()].view(r, f)),
            Slot::Results => Part::Results(Results::of(r, f)),
            Slot::Lower(i) => Part::Table(LOWER[i % LOWER.len()].view(r, f)),
        }
    }
}

/// Answer with the page: the opening now, the rest as it arrives.
pub(super) fn respond(layout: Layout, view: StreamedView, filter: Filter) -> Response {
    let opening = opening(layout, &view.opening, filter);
    let html = match opening.render() {
        Ok(html) => neutralise_bidi(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong showing this page.",
            )
                .into_response();
        }
    };
    // The opening says so itself if its text was altered; the parts say it once after.
    let said = html.contains(super::super::text::BIDI_NOTICE);
    let (head, tail) = match html.split_once(PARTS_MARK) {
        Some((head, tail)) => (head.to_owned(), tail.to_owned()),
        None => (html, String::new()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(write(head, tail, view, opening.filter, said, tx));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn opening(layout: Layout, o: &Opening, filter: Filter) -> RecordOpening {
    RecordOpening {
        layout,
        nhs: o.nhs.to_string(),
        nhs_formatted: o.nhs.formatted(),
        patient: o.patient.as_ref().map(|p| IndexBanner {
            name: clip(&list_name(&p.family, &p.given), 200),
            birth_date: human_date(&p.birth_date.format("%Y-%m-%d").to_string()),
            gender: gender(p.gender.as_deref()),
        }),
        asking: o.asking.clone(),
        basis: o.basis.describe(),
        filter,
    }
}

/// Write the page after its opening: each part as its sources answer, then the close.
async fn write(
    head: String,
    tail: String,
    mut view: StreamedView,
    filter: Filter,
    mut said: bool,
    tx: mpsc::Sender<Bytes>,
) {
    // A reader who has gone away stops the writing; the gateway finishes (and audits) anyway.
    if tx.send(Bytes::from(head)).await.is_err() {
        return;
    }
    let nhs = view.opening.nhs.to_string();
    let mut page = Sent::default();
    while let Some(arrival) = view.arrivals.recv().await {
        let html = match arrival {
            Arrival::Sections { sections, record } => page.take(&nhs, sections, record, &filter),
            Arrival::Complete { view, audited } => {
                let mut html = page.close(*view, &filter, audited.is_err());
                html.push_str("</div>");
                html.push_str(&tail);
                let html = neutralise_bidi_part(html, &mut said);
                let _ = tx.send(Bytes::from(html)).await;
                return;
            }
        };
        let html = neutralise_bidi_part(html, &mut said);
        if !html.is_empty() && tx.send(Bytes::from(html)).await.is_err() {
            return;
        }
    }
    tracing::error!("the record view ended without its whole record");
    let broken = RecordBroken {
        asking: view.opening.asking.clone(),
        shown: SLOTS[..page.next].iter().map(|s| s.title()).collect(),
    };
    let mut html = broken.render().unwrap_or_else(|_| {
        "<p id=\"record-incomplete\">This record is incomplete: parts of it are missing.</p>".into()
    });
    html.push_str("</div>");
    html.push_str(&tail);
    let _ = tx.send(Bytes::from(html)).await;
}

/// What has been sent so far.
#[derive(Default)]
struct Sent {
    /// The settled sections' items that a part still to send shows, and each answered
    /// source's status.
    so_far: Option<MergedRecord>,
    /// Sections every source that may hold them has answered for.
    settled: BTreeSet<Section>,
    /// How many of `SLOTS` have been sent.
    next: usize,
    /// Sections shown in a part already sent.
    sent: BTreeSet<Section>,
    /// What the glance counts of the items let go once every part showing them was sent.
    glanced: BTreeMap<Section, usize>,
}

impl Sent {
    /// Keep newly settled sections, and write every part now ready, in the page's order.
    fn take(
        &mut self,
        nhs: &str,
        sections: BTreeSet<Section>,
        record: MergedRecord,
        filter: &Filter,
    ) -> String {
        let so_far = match self.so_far.as_mut() {
            None => self.so_far.insert(record),
            Some(so_far) => {
                let MergedRecord {
                    sections: mut arrived,
                    sources,
                    ..
                } = record;
                for (s, items) in &mut so_far.sections {
                    if let Some((_, new)) = arrived.iter_mut().find(|(a, _)| a == s) {
                        if sections.contains(s) {
                            *items = std::mem::take(new);
                        }
                    }
                }
                so_far.sources = sources;
                so_far
            }
        };
        self.settled.extend(sections);
        let mut html = String::new();
        while let Some(slot) = SLOTS.get(self.next) {
            if !slot.sections().iter().all(|s| self.settled.contains(s)) {
                break;
            }
            html.push_str(&render_part(nhs, failed(so_far), slot.part(so_far, filter)));
            self.sent.extend(slot.sections());
            self.next += 1;
            // Items no part still to send shows are let go; the glance's count of them is kept.
            for s in slot.sections() {
                if SLOTS[self.next..]
                    .iter()
                    .any(|later| later.sections().contains(s))
                {
                    continue;
                }
                if let Some((_, items)) = so_far.sections.iter_mut().find(|(at, _)| at == s) {
                    let items = std::mem::take(items);
                    *self.glanced.entry(*s).or_default() += summary::glance_count(*s, &items);
                }
            }
        }
        html
    }

    /// The close: the banner and warnings from the whole view, each part not sent yet, and
    /// for each part already sent, what reached it afterwards. The whole view's sections hold
    /// only what was not handed over in a part ([`Arrival::Complete`]).
    fn close(
        &mut self,
        mut view: mcr_gateway::View,
        filter: &Filter,
        audit_failed: bool,
    ) -> String {
        let mut late = Vec::new();
        for s in &self.sent {
            let more = view.record.items(*s).len();
            if more > 0 {
                late.push(format!(
                    "{more} more {} of {} arrived after that part of the page was shown: reload the page to see them.",
                    if more == 1 { "item" } else { "items" },
                    s.title()
                ));
            }
        }
        // The record as the page holds it for the parts not sent yet: what was handed over,
        // with what came after, newest first as the merge orders them.
        if let Some(so_far) = self.so_far.take() {
            for (s, mut items) in so_far.sections {
                if items.is_empty() {
                    continue;
                }
                if let Some((_, after)) = view.record.sections.iter_mut().find(|(at, _)| *at == s) {
                    let more = !after.is_empty();
                    items.append(after);
                    if more {
                        items.sort_by(|a, b| b.date.cmp(&a.date));
                    }
                    *after = items;
                }
            }
        }
        let r = &view.record;
        let mut page = record_page(&view, filter);
        page.audit_failed = audit_failed;
        page.late = late;
        for g in &mut page.glance {
            g.count += self.glanced.get(&g.section).copied().unwrap_or(0);
        }
        let mut html = page.render().unwrap_or_else(|e| {
            tracing::error!(error = %e, "template failed to render");
            "<p id=\"record-incomplete\">This record is incomplete: who answered could not be shown.</p>".into()
        });
        let nhs = r.nhs_number.to_string();
        let mut upper: Vec<Option<SectionView>> = page.upper.into_iter().map(Some).collect();
        let mut lower: Vec<Option<SectionView>> = page.lower.into_iter().map(Some).collect();
        let mut summary = Some(page.summary);
        let mut results = Some(page.results);
        for slot in SLOTS.iter().skip(self.next) {
            let part = match *slot {
                Slot::Summary => summary.take().map(Part::Summary),
                Slot::Upper(i) => upper.get_mut(i).and_then(Option::take).map(Part::Table),
                Slot::Results => results.take().map(Part::Results),
                Slot::Lower(i) => lower.get_mut(i).and_then(Option::take).map(Part::Table),
            };
            if let Some(part) = part {
                html.push_str(&render_part(&nhs, page.failed.clone(), part));
            }
        }
        html
    }
}

/// One part as HTML; a part that cannot be rendered says so in its place.
fn render_part(nhs: &str, failed: Vec<String>, part: Part) -> String {
    let part = RecordPart {
        nhs: nhs.to_owned(),
        failed,
        part,
    };
    part.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed to render");
        "<p class=\"app-record__part\">Part of this record could not be shown. Try again shortly.</p>".into()
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{dated, record_with};
    use super::*;

    /// A record with every section, the problems holding `problems` items.
    fn record(problems: usize) -> MergedRecord {
        record_with(
            Section::ALL
                .iter()
                .map(|s| {
                    let n = if *s == Section::Problems { problems } else { 0 };
                    let items = (0..n)
                        .map(|i| dated(*s, &format!("Problem {i}"), "2026-01-01", "active"))
                        .collect();
                    (*s, items)
                })
                .collect(),
        )
    }

    #[test]
    fn parts_go_in_the_pages_order_and_what_came_late_is_said() {
        let filter = Filter::default();
        let mut sent = Sent::default();
        // The problems are in, but the summary above them waits for its other sections.
        let html = sent.take(
            "9434765919",
            [Section::Problems].into_iter().collect(),
            record(2),
            &filter,
        );
        assert_eq!(html, "", "nothing is sent out of the page's order");
        let html = sent.take(
            "9434765919",
            [
                Section::Alerts,
                Section::LegalEndOfLife,
                Section::Allergies,
                Section::Medications,
                Section::Encounters,
                Section::Appointments,
            ]
            .into_iter()
            .collect(),
            record(0),
            &filter,
        );
        let at = |id: &str| html.find(&format!("id=\"{id}\""));
        assert!(at("summary") < at("alerts") && at("alerts") < at("appointments"));
        assert!(html.contains("Problem 1"), "the problems as they settled");
        assert_eq!(at("results"), None, "the results wait for their sources");
        assert_eq!(
            sent.next, 9,
            "the summary and the eight tables above the results"
        );

        // The whole view: it holds only what no part was handed (one problem that came after
        // the problems were sent); the rest of the page follows.
        let view = mcr_gateway::View {
            record: record(1),
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let close = sent.close(view, &filter, true);
        assert!(
            close.contains("1 more item of Problems and diagnoses arrived after that part of the page was shown"),
            "{close}"
        );
        assert!(close.contains("could not be written to the audit trail"));
        assert!(close.contains("id=\"sources\""), "the banner");
        assert!(close.contains("id=\"results\"") && close.contains("id=\"care\""));
        assert!(
            !close.contains("id=\"alerts\""),
            "a part is never sent twice"
        );
        assert!(
            close.contains("End of the record: some items arrived after their part"),
            "the last line says the record is not whole as shown"
        );
    }

    /// The items of a part are let go once every part showing them is sent; the glance at the
    /// end still counts them, and what came after.
    #[test]
    fn items_sent_are_let_go_and_still_counted_in_the_glance() {
        let filter = Filter::default();
        let mut sent = Sent::default();
        let mut record = record(2);
        let results = (0..4)
            .map(|i| {
                dated(
                    Section::Results,
                    &format!("HbA1c {i}"),
                    "2026-01-01",
                    "final",
                )
            })
            .collect();
        if let Some((_, items)) = record
            .sections
            .iter_mut()
            .find(|(s, _)| *s == Section::Results)
        {
            *items = results;
        }
        let html = sent.take(
            "9434765919",
            Section::ALL.iter().copied().collect(),
            record,
            &filter,
        );
        assert!(
            html.contains("HbA1c 3") && html.contains("Problem 1"),
            "{html}"
        );
        assert_eq!(sent.next, SLOTS.len(), "every part sent");
        let held: usize = sent
            .so_far
            .as_ref()
            .map_or(0, |r| r.sections.iter().map(|(_, items)| items.len()).sum());
        assert_eq!(held, 0, "no item is held once its parts are sent");
        assert_eq!(sent.glanced.get(&Section::Results), Some(&4));

        // One more result came after the results were sent.
        let mut whole = super::super::fixtures::record_with(vec![(
            Section::Results,
            vec![dated(Section::Results, "HbA1c late", "2026-02-01", "final")],
        )]);
        whole.sources = Vec::new();
        let view = mcr_gateway::View {
            record: whole,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let close = sent.close(view, &filter, false);
        assert!(
            close.contains("Results: 5"),
            "the glance counts all five: {close}"
        );
        assert!(
            close.contains(
                "1 more item of Observations and results arrived after that part of the page was shown"
            ),
            "{close}"
        );
        assert!(
            !close.contains("id=\"results\""),
            "a part is never sent twice"
        );
    }
}
