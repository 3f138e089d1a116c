//! The care-event feed: a care-event type asked for across every patient by date (the
//! gateway's index sync reads their metadata), generated once per type and day and cut into
//! pages.

use super::{bad, Bad, Params};
use chrono::NaiveDate;
use mcr_synth::SourceSlice;
use serde_json::Value;

/// Care-event types a system may ask for across every patient, by date (the gateway's index
/// sync reads their metadata).
const CARE_EVENT_TYPES: [&str; 5] = [
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "Appointment",
    "CareTeam",
];

pub(crate) fn is_care_event_feed(resource_type: &str, params: &Params) -> bool {
    CARE_EVENT_TYPES.contains(&resource_type)
        && params.iter().any(|(k, _)| k == "date")
        && !params.iter().any(|(k, _)| k == "patient" || k == "subject")
}

/// Care-event feeds already generated, by type and day: every page of one feed is cut from
/// the same list, generated once (the records never change), not the region again per page.
#[derive(Default)]
pub(crate) struct FeedCache(std::sync::Mutex<std::collections::HashMap<FeedKey, Feed>>);

/// A feed's resource type and first day.
type FeedKey = (String, NaiveDate);
type Feed = std::sync::Arc<Vec<Value>>;

/// Every patient's `resource_type` whose period reaches the `date=geYYYY-MM-DD` day or later
/// (open ones included), in patient order.
pub(super) fn care_event_feed(
    slice: &SourceSlice,
    resource_type: &str,
    params: &Params,
    feeds: &FeedCache,
) -> Result<std::sync::Arc<Vec<Value>>, Bad> {
    let mut from = None;
    for (k, v) in params {
        match k.as_str() {
            "date" => {
                let day = v
                    .strip_prefix("ge")
                    .ok_or_else(|| bad("date must be geYYYY-MM-DD"))?;
                from = Some(
                    NaiveDate::parse_from_str(day, "%Y-%m-%d")
                        .map_err(|_| bad("date must be geYYYY-MM-DD"))?,
                );
            }
            "_count" | "_offset" | "_format" => {}
            _ => return Err(bad("unsupported search parameter")),
        }
    }
    let from = from.ok_or_else(|| bad("date must be geYYYY-MM-DD"))?;
    let reaches = |r: &Value| {
        let end = r
            .get("period")
            .and_then(|p| p.get("end"))
            .and_then(Value::as_str);
        match end {
            None => true,
            Some(e) => {
                e.get(..10)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    >= Some(from)
            }
        }
    };
    let mut cache = feeds
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let list = cache
        .entry((resource_type.to_owned(), from))
        .or_insert_with(|| {
            std::sync::Arc::new(
                slice
                    .patients()
                    .iter()
                    .flat_map(|p| slice.resources(&p.local_id, resource_type))
                    .filter(reaches)
                    .collect(),
            )
        });
    Ok(std::sync::Arc::clone(list))
}
