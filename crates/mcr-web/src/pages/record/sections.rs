//! The sections below the summary: the reader's filter (a date before which items are not
//! listed, and the sections listed whole: "Show N older"), and each section's dense table,
//! newest first. Links and a form, so the page needs no JavaScript.

use super::super::text::clip;
use super::documents::decorate_document;
use super::summary::{has_status, CURRENT_MEDICATION};
use super::{item_view, ItemView};
use chrono::NaiveDate;
use mcr_domain::{MergedRecord, RecordItem, Section};

/// How many items a section lists before "Show older".
const SECTION_ROWS: usize = 10;

/// What the reader asked for in the page's address (links and a form: no JavaScript needed):
/// `from` (`YYYY-MM-DD`) hides items dated before it; `older` (section ids, comma-separated)
/// lists those sections whole.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RecordQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub older: Option<String>,
}

/// The reader's filter, checked.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Items dated before this day are not listed (undated items always are), as
    /// `YYYY-MM-DD`.
    from: Option<String>,
    /// Sections listed whole.
    older: Vec<String>,
    /// What was typed for `from`, to show again.
    pub from_text: String,
    /// Why `from` was not used.
    pub error: Option<String>,
}

impl Filter {
    pub(crate) fn read(q: &RecordQuery) -> Self {
        let mut f = Filter::default();
        if let Some(raw) = q.from.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            f.from_text = clip(raw, 20);
            match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
                Ok(d) => f.from = Some(d.format("%Y-%m-%d").to_string()),
                Err(_) => {
                    f.error =
                        Some("Enter the date as year, month and day, for example 2024-03-31".into())
                }
            }
        }
        if let Some(raw) = q.older.as_deref() {
            f.older = raw
                .split(',')
                .filter(|id| {
                    (1..=40).contains(&id.len())
                        && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                })
                .take(20)
                .map(str::to_owned)
                .collect();
        }
        f
    }

    /// True when the filter's date hides `item` (dated before it).
    pub(super) fn hides(&self, item: &RecordItem) -> bool {
        let (Some(from), Some(date)) = (self.from.as_deref(), item.date.as_deref()) else {
            return false;
        };
        // ISO 8601 dates compare as text; a partial date (`2024-03`) counts as its start.
        date.get(..10).unwrap_or(date) < from
    }

    pub(super) fn whole(&self, id: &str) -> bool {
        self.older.iter().any(|o| o == id)
    }

    /// This page's address with section `id` listed whole too.
    pub(super) fn older_href(&self, id: &str) -> String {
        let mut q = Vec::new();
        if let Some(d) = &self.from {
            q.push(format!("from={d}"));
        }
        let mut older: Vec<&str> = self.older.iter().map(String::as_str).collect();
        older.push(id);
        q.push(format!("older={}", older.join(",")));
        format!("?{}#{id}", q.join("&"))
    }
}

/// One section as shown: a dense table of its items (newest first), or why it is empty.
pub(crate) struct SectionView {
    pub id: &'static str,
    pub title: &'static str,
    pub available: bool,
    pub rows: Vec<ItemView>,
    /// Items not listed because they are dated before the filter's date.
    pub before_filter: usize,
    /// Older items not listed yet: "Show N older".
    pub older: usize,
    pub older_href: String,
}

/// A section's table: the items `keep` selects, those the filter's date hides counted, the
/// first `SECTION_ROWS` listed unless the reader asked for the whole section.
pub(super) fn section(
    record: &MergedRecord,
    filter: &Filter,
    s: Section,
    id: &'static str,
    title: &'static str,
    keep: impl Fn(&RecordItem) -> bool,
) -> SectionView {
    let whole = filter.whole(id);
    let mut v = SectionView {
        id,
        title,
        available: !record.unavailable_sections.contains(&s),
        rows: Vec::new(),
        before_filter: 0,
        older: 0,
        older_href: String::new(),
    };
    for item in record.items(s).iter().filter(|i| keep(i)) {
        if filter.hides(item) {
            v.before_filter += 1;
        } else if !whole && v.rows.len() >= SECTION_ROWS {
            v.older += 1;
        } else {
            let mut row = item_view(item);
            if item.resource_type == "DocumentReference" {
                decorate_document(record, item, &mut row);
            }
            v.rows.push(row);
        }
    }
    if v.older > 0 {
        v.older_href = filter.older_href(id);
    }
    v
}

/// Which of a section's items a table lists.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keep {
    All,
    /// Medications still taken.
    Current,
    /// Medications no longer taken.
    Past,
}

impl Keep {
    fn keeps(self, item: &RecordItem) -> bool {
        match self {
            Keep::All => true,
            Keep::Current => has_status(item, &CURRENT_MEDICATION),
            Keep::Past => !has_status(item, &CURRENT_MEDICATION),
        }
    }
}

/// One table of the page: the section it lists, its anchor, its title (the section's own
/// when `None`) and which items it lists.
#[derive(Debug, Clone, Copy)]
pub(super) struct Table {
    pub section: Section,
    pub id: &'static str,
    pub title: Option<&'static str>,
    pub keep: Keep,
}

const fn table(section: Section, id: &'static str) -> Table {
    Table {
        section,
        id,
        title: None,
        keep: Keep::All,
    }
}

/// The tables above the results, in the page's order.
pub(super) const UPPER: [Table; 8] = [
    table(Section::Alerts, "alerts"),
    table(Section::LegalEndOfLife, "legal"),
    table(Section::Allergies, "allergies"),
    Table {
        title: Some("Current medications"),
        keep: Keep::Current,
        ..table(Section::Medications, "medications-current")
    },
    Table {
        title: Some("Past medications"),
        keep: Keep::Past,
        ..table(Section::Medications, "medications-past")
    },
    table(Section::Problems, "problems"),
    table(Section::Encounters, "encounters"),
    table(Section::Appointments, "appointments"),
];

/// The tables below the results, in the page's order.
pub(super) const LOWER: [Table; 6] = [
    table(Section::Immunisations, "immunisations"),
    table(Section::Procedures, "procedures"),
    table(Section::Referrals, "referrals"),
    Table {
        title: Some("Documents"),
        ..table(Section::Documents, "documents")
    },
    table(Section::CareTeam, "care-team"),
    table(Section::CareAndSupport, "care"),
];

impl Table {
    /// This table as `f` lists it from `r`.
    pub(super) fn view(&self, r: &MergedRecord, f: &Filter) -> SectionView {
        let title = self.title.unwrap_or_else(|| self.section.title());
        section(r, f, self.section, self.id, title, |i| self.keep.keeps(i))
    }
}

/// The sections above the results, in the page's order.
pub(super) fn upper(r: &MergedRecord, f: &Filter) -> Vec<SectionView> {
    UPPER.iter().map(|t| t.view(r, f)).collect()
}

/// The sections below the results, in the page's order.
pub(super) fn lower(r: &MergedRecord, f: &Filter) -> Vec<SectionView> {
    LOWER.iter().map(|t| t.view(r, f)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{dated, record_with};
    use super::*;
    use mcr_domain::RecordItem;

    #[test]
    fn sections_list_the_newest_first_and_count_the_older_and_the_filtered() {
        // 25 problems, one a month, newest first as the merge sorts them.
        let problems: Vec<RecordItem> = (0..25)
            .map(|n| {
                let month = 12 - (n % 12);
                let year = 2026 - n / 12;
                dated(
                    Section::Problems,
                    &format!("Problem {n}"),
                    &format!("{year}-{month:02}-01"),
                    "active",
                )
            })
            .collect();
        let record = record_with(vec![(Section::Problems, problems)]);
        let none = Filter::default();
        let v = section(
            &record,
            &none,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!(v.rows.len(), SECTION_ROWS);
        assert_eq!(v.rows[0].display, "Problem 0", "newest first");
        assert_eq!(v.older, 25 - SECTION_ROWS);
        assert_eq!(v.older_href, "?older=problems#problems");

        let whole = Filter::read(&RecordQuery {
            from: None,
            older: Some("results,problems".into()),
        });
        let v = section(
            &record,
            &whole,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!(
            (v.rows.len(), v.older),
            (25, 0),
            "'show older' lists it whole"
        );

        let from = Filter::read(&RecordQuery {
            from: Some(" 2026-01-01 ".into()),
            older: None,
        });
        let v = section(
            &record,
            &from,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!((v.rows.len(), v.before_filter, v.older), (10, 13, 2));
        assert_eq!(
            from.older_href("results"),
            "?from=2026-01-01&older=results#results",
            "the date filter is kept when showing older items"
        );

        let bad = Filter::read(&RecordQuery {
            from: Some("31/03/2024".into()),
            older: Some("x<script>,PROBLEMS".into()),
        });
        assert!(bad.error.is_some(), "a date that does not read is said");
        assert_eq!(bad.from_text, "31/03/2024", "and shown again as typed");
        let v = section(
            &record,
            &bad,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!((v.before_filter, v.older), (0, 15), "and not applied");
    }
}
