//! The summary, within the first screen: a box each for alerts, legal and end-of-life,
//! allergies, current medications, active problems and last encounters (the first few items,
//! and how many more), then a line counting the record's other areas, each a link to its
//! section.

use super::{item_view, ItemView};
use mcr_domain::{MergedRecord, RecordItem, Section};

/// How many items each box of the summary lists (the rest are one link away).
const SUMMARY_ROWS: usize = 3;
/// How many encounters the summary shows.
const SUMMARY_ENCOUNTERS: usize = 3;

/// One box of the summary: the first few items, and how many more the section holds.
pub(crate) struct SummaryBox {
    pub id: &'static str,
    pub title: &'static str,
    pub available: bool,
    pub rows: Vec<ItemView>,
    pub more: usize,
    /// The section that lists them all.
    pub href: &'static str,
}

/// Another area of the record, counted in the summary with a link to it.
pub(crate) struct Glance {
    pub label: &'static str,
    pub section: Section,
    pub count: usize,
    pub href: &'static str,
}

pub(super) const CURRENT_MEDICATION: [&str; 3] = ["active", "intended", "on-hold"];
const ACTIVE_PROBLEM: [&str; 3] = ["active", "recurrence", "relapse"];
const UPCOMING: [&str; 4] = ["booked", "pending", "proposed", "waitlist"];
const OPEN_REFERRAL: [&str; 3] = ["active", "on-hold", "draft"];
const ENDED: [&str; 4] = ["finished", "inactive", "cancelled", "entered-in-error"];

pub(super) fn has_status(item: &RecordItem, statuses: &[&str]) -> bool {
    item.status
        .as_deref()
        .is_some_and(|s| statuses.contains(&s))
}

/// A box of the summary: the first `limit` items `keep` selects (never date-filtered: the
/// summary is what holds now).
fn summary_box(
    record: &MergedRecord,
    (s, id, title, href): (Section, &'static str, &'static str, &'static str),
    limit: usize,
    keep: impl Fn(&RecordItem) -> bool,
) -> SummaryBox {
    let mut b = SummaryBox {
        id,
        title,
        available: !record.unavailable_sections.contains(&s),
        rows: Vec::new(),
        more: 0,
        href,
    };
    for item in record.items(s).iter().filter(|i| keep(i)) {
        if b.rows.len() < limit {
            b.rows.push(item_view(item));
        } else {
            b.more += 1;
        }
    }
    b
}

/// The summary's boxes, in the page's order.
pub(super) fn boxes(r: &MergedRecord) -> Vec<SummaryBox> {
    let all = |_: &RecordItem| true;
    let current = |i: &RecordItem| has_status(i, &CURRENT_MEDICATION);
    vec![
        summary_box(
            r,
            (Section::Alerts, "summary-alerts", "Alerts", "#alerts"),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::LegalEndOfLife,
                "summary-legal",
                "Legal and end-of-life",
                "#legal",
            ),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::Allergies,
                "summary-allergies",
                "Allergies",
                "#allergies",
            ),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::Medications,
                "summary-medications",
                "Current medications",
                "#medications-current",
            ),
            SUMMARY_ROWS,
            current,
        ),
        summary_box(
            r,
            (
                Section::Problems,
                "summary-problems",
                "Active problems",
                "#problems",
            ),
            SUMMARY_ROWS,
            |i| has_status(i, &ACTIVE_PROBLEM),
        ),
        summary_box(
            r,
            (
                Section::Encounters,
                "summary-encounters",
                "Last encounters",
                "#encounters",
            ),
            SUMMARY_ENCOUNTERS,
            all,
        ),
    ]
}

/// An area of the record the glance counts.
struct Area {
    label: &'static str,
    section: Section,
    href: &'static str,
    /// Which of its items count.
    counts: fn(&RecordItem) -> bool,
}

const fn area(
    label: &'static str,
    section: Section,
    href: &'static str,
    counts: fn(&RecordItem) -> bool,
) -> Area {
    Area {
        label,
        section,
        href,
        counts,
    }
}

/// The record's other areas the glance counts, in its order.
const GLANCES: [Area; 7] = [
    area(
        "Upcoming appointments",
        Section::Appointments,
        "#appointments",
        |i| has_status(i, &UPCOMING),
    ),
    area("Open referrals", Section::Referrals, "#referrals", |i| {
        has_status(i, &OPEN_REFERRAL)
    }),
    area("Care team", Section::CareTeam, "#care-team", |i| {
        !has_status(i, &ENDED)
    }),
    area(
        "Immunisations",
        Section::Immunisations,
        "#immunisations",
        |_| true,
    ),
    area("Procedures", Section::Procedures, "#procedures", |_| true),
    area("Results", Section::Results, "#results", |_| true),
    area("Documents", Section::Documents, "#documents", |_| true),
];

/// The record's other areas, counted (those the role may see).
pub(super) fn glances(r: &MergedRecord) -> Vec<Glance> {
    GLANCES
        .iter()
        .filter(|a| !r.unavailable_sections.contains(&a.section))
        .map(|a| Glance {
            label: a.label,
            section: a.section,
            count: glance_count(a.section, r.items(a.section)),
            href: a.href,
        })
        .collect()
}

/// How many of `items`, of section `s`, the glance counts (none when it does not count `s`).
pub(super) fn glance_count(s: Section, items: &[RecordItem]) -> usize {
    GLANCES
        .iter()
        .filter(|a| a.section == s)
        .map(|a| items.iter().filter(|i| (a.counts)(i)).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{dated, record_with};
    use super::super::{record_page, Filter};
    use mcr_domain::Section;

    #[test]
    fn the_summary_puts_legal_and_end_of_life_decisions_beside_the_alerts() {
        let record = record_with(vec![
            (
                Section::LegalEndOfLife,
                vec![dated(
                    Section::LegalEndOfLife,
                    "Not for attempted cardiopulmonary resuscitation",
                    "2026-02-01",
                    "active",
                )],
            ),
            (
                Section::Appointments,
                vec![
                    dated(
                        Section::Appointments,
                        "Falls clinic",
                        "2027-01-10",
                        "booked",
                    ),
                    dated(
                        Section::Appointments,
                        "Respiratory clinic",
                        "2025-01-10",
                        "fulfilled",
                    ),
                ],
            ),
        ]);
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let page = record_page(&view, &Filter::default());
        let titles: Vec<&str> = page.summary.iter().map(|b| b.title).collect();
        assert_eq!(
            titles,
            [
                "Alerts",
                "Legal and end-of-life",
                "Allergies",
                "Current medications",
                "Active problems",
                "Last encounters"
            ]
        );
        assert_eq!(
            page.summary[1].rows[0].display,
            "Not for attempted cardiopulmonary resuscitation"
        );
        let upcoming = page
            .glance
            .iter()
            .find(|g| g.label == "Upcoming appointments")
            .map(|g| g.count);
        assert_eq!(
            upcoming,
            Some(1),
            "a booked appointment is upcoming, a fulfilled one not"
        );
        let ids: Vec<&str> = page.upper.iter().map(|s| s.id).collect();
        assert_eq!(
            &ids[..2],
            ["alerts", "legal"],
            "legal and end-of-life near the top"
        );
    }
}
