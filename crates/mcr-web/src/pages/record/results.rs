//! Observations and results: each report (`DiagnosticReport`) with the results it names, as
//! one row; and repeated measurements of one thing grouped, newest first, charted when there
//! are several.

use super::super::chart::{trend_svg, Point};
use super::super::text::{clip, human_date, sort_key};
use super::read;
use super::sections::Filter;
use super::{item_view, ItemView};
use mcr_domain::{MergedRecord, RecordItem, Section};

/// How many measurements each group of results lists before "Show older".
const RESULT_ROWS: usize = 5;

/// An investigation: a report (`DiagnosticReport`) with the results it names, as one row.
pub(crate) struct Investigation {
    pub report: ItemView,
    /// Each result the report names that this record holds: what was measured and the value.
    pub results: Vec<String>,
    /// Results it names that are not in this record (not sent, withheld, or not granted).
    pub missing: usize,
}

/// Repeated measurements of one thing, newest first, with a chart when there are several.
pub(crate) struct ResultGroup {
    pub title: String,
    pub rows: Vec<ItemView>,
    pub chart: Option<String>,
    /// Older measurements not listed yet.
    pub older: usize,
}

/// The results part of the page, as the reader's filter lists it.
pub(crate) struct Results {
    pub available: bool,
    pub investigations: Vec<Investigation>,
    pub groups: Vec<ResultGroup>,
    /// Results not listed because they are dated before the filter's date.
    pub before_filter: usize,
    pub older_href: String,
}

impl Results {
    pub(super) fn of(r: &MergedRecord, f: &Filter) -> Self {
        let results_available = !r.unavailable_sections.contains(&Section::Results);
        let mut results_before_filter = 0;
        let mut investigations = Vec::new();
        let results = if results_available {
            let shown: Vec<&RecordItem> = r
                .items(Section::Results)
                .iter()
                .filter(|i| {
                    let hidden = f.hides(i);
                    results_before_filter += usize::from(hidden);
                    !hidden
                })
                .collect();
            let limit = (!f.whole("results")).then_some(RESULT_ROWS);
            investigations = self::investigations(&shown);
            result_groups(&shown, limit)
        } else {
            Vec::new()
        };
        let results_older_href = f.older_href("results");
        Results {
            available: results_available,
            investigations,
            groups: results,
            before_filter: results_before_filter,
            older_href: results_older_href,
        }
    }
}

/// Each report among `items` (newest first) with the observations it names (`result`),
/// found among `items` from the same source by id. Observations stay in their own groups
/// too (the trend of one test across reports).
pub(crate) fn investigations(items: &[&RecordItem]) -> Vec<Investigation> {
    let reports: Vec<&&RecordItem> = items
        .iter()
        .filter(|i| i.resource_type == "DiagnosticReport")
        .collect();
    if reports.is_empty() {
        return Vec::new();
    }
    // (source, observation id) -> the observation, ids borrowed from the items' addresses.
    let observations: std::collections::HashMap<(&str, &str), &RecordItem> = items
        .iter()
        .filter(|i| i.resource_type == "Observation")
        .flat_map(|i| {
            i.sources.iter().filter_map(move |s| {
                let (_, id) = s.full_url.rsplit_once("/Observation/")?;
                Some(((s.source.as_str(), id), *i))
            })
        })
        .collect();
    reports
        .into_iter()
        .map(|report| {
            let source = report.sources.first().map_or("", |s| s.source.as_str());
            let named = read::result_references(report.resource.json());
            let mut results = Vec::new();
            let mut missing = 0;
            for reference in &named {
                let id = reference
                    .rsplit_once("Observation/")
                    .map_or(reference.as_str(), |(_, id)| id);
                match observations.get(&(source, id)) {
                    Some(o) => results.push(match &o.detail {
                        Some(d) => format!("{}: {d}", o.display),
                        None => o.display.clone(),
                    }),
                    None => missing += 1,
                }
            }
            Investigation {
                report: item_view(report),
                results,
                missing,
            }
        })
        .collect()
}

/// Group results by code (or name), newest first within each group; chart the numeric ones.
/// `limit` rows per group are listed (all when `None`); older ones are counted.
pub(crate) fn result_groups(items: &[&RecordItem], limit: Option<usize>) -> Vec<ResultGroup> {
    let mut order: Vec<GroupKey<'_>> = Vec::new();
    let mut groups: std::collections::HashMap<GroupKey<'_>, Vec<&RecordItem>> =
        std::collections::HashMap::new();
    for item in items {
        let key = match &item.code {
            Some((system, code)) => GroupKey::Code(system, code),
            None => GroupKey::Text(&item.display),
        };
        groups
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(item);
    }
    order
        .iter()
        .enumerate()
        .filter_map(|(n, key)| {
            let mut members = groups.remove(key)?;
            // Newest first (stable: the merge's order among equal dates stays).
            members.sort_by(|a, b| sort_key(b.date.as_deref()).cmp(sort_key(a.date.as_deref())));
            let title = members
                .first()
                .map(|i| i.display.clone())
                .unwrap_or_default();
            // Each measurement's value and unit, read once from its text (oldest first, as
            // the chart draws them).
            let measured: Vec<read::Quantity> = members
                .iter()
                .rev()
                .map(|i| read::quantity(i.resource.json()))
                .collect();
            // The unit of the newest measurement that gives one.
            let unit = measured
                .iter()
                .rev()
                .find_map(|q| q.unit.as_deref())
                .unwrap_or_default();
            let points: Vec<Point> = members
                .iter()
                .rev()
                .zip(&measured)
                .filter(|(i, _)| i.date.is_some())
                .filter_map(|(i, q)| {
                    Some(Point {
                        label: human_date(i.date.as_deref().unwrap_or_default()),
                        value: q.value?,
                    })
                })
                .collect();
            let chart = trend_svg(
                &format!("chart-{n}"),
                &clip(&title, 80),
                &clip(unit, 20),
                &points,
            );
            let listed = limit.unwrap_or(members.len()).min(members.len());
            let older = members.len() - listed;
            Some(ResultGroup {
                title,
                rows: members.into_iter().take(listed).map(item_view).collect(),
                chart,
                older,
            })
        })
        .collect()
}

/// What results are grouped by: their code, or their name when they have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GroupKey<'a> {
    Code(&'a str, &'a str),
    Text(&'a str),
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{dated, item};
    use super::*;
    use serde_json::json;

    #[test]
    fn results_group_by_code_and_chart_repeats() {
        let items = [
            item("HbA1c", "2026-03-01", 50.0),
            item("Sodium", "2026-02-01", 140.0),
            item("HbA1c", "2025-09-01", 55.0),
            item("HbA1c", "2025-03-01", 60.0),
        ];
        let refs: Vec<&RecordItem> = items.iter().collect();
        let groups = result_groups(&refs, None);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].title, "HbA1c");
        assert_eq!(groups[0].rows.len(), 3);
        assert_eq!(groups[0].older, 0);
        let limited = result_groups(&refs, Some(2));
        assert_eq!(
            (limited[0].rows.len(), limited[0].older),
            (2, 1),
            "the newest two listed, the oldest counted for 'Show older'"
        );
        assert_eq!(limited[0].rows[1].date, "1 September 2025");
        assert_eq!(groups[0].rows[0].date, "1 March 2026");
        let chart = groups[0].chart.as_deref().unwrap_or_default();
        assert!(
            chart.contains("3 measurements from 1 March 2025 to 1 March 2026"),
            "{chart}"
        );
        assert!(
            groups[1].chart.is_none(),
            "a single measurement has no trend"
        );
    }

    #[test]
    fn a_report_is_listed_with_the_results_it_names() {
        let mut report = dated(Section::Results, "Full blood count", "2026-03-01", "final");
        report.resource_type = "DiagnosticReport".into();
        report.resource =
            mcr_domain::SourceJson::from_value(&json!({"resourceType": "DiagnosticReport",
            "result": [{"reference": "Observation/hb"}, {"reference": "Observation/gone"}]}));
        let mut hb = item("Haemoglobin", "2026-03-01", 131.0);
        hb.sources[0].full_url = "http://gp/Observation/hb".into();
        let other = item("Sodium", "2026-03-01", 140.0);
        let items = [&report, &hb, &other];
        let inv = investigations(&items);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].report.display, "Full blood count");
        assert_eq!(inv[0].results, ["Haemoglobin: 131 mmol/mol"]);
        assert_eq!(
            inv[0].missing, 1,
            "a result it names that the record lacks is counted"
        );
        assert!(investigations(&[&hb, &other]).is_empty());
    }
}
