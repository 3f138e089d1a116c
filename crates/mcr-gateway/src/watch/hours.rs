//! Working hours, in UK local time: a kind of organisation's normal days and hours, and the
//! UK's clock (GMT, and BST from the last Sunday of March to the last Sunday of October, both
//! at 01:00 UTC), so the watch can tell a view out of hours.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};

/// The days and hours staff of one kind of organisation normally work, in UK local time:
/// written `Mon-Fri 07:00-19:00` (days: `Mon`…`Sun`, ranges and commas; hours `HH:MM-HH:MM`,
/// `24:00` for the end of the day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    text: String,
    /// Monday first.
    days: [bool; 7],
    open_min: u32,
    close_min: u32,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn day_index(s: &str) -> Option<usize> {
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(s))
}

fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 24 * 60).then_some(total)
}

impl WorkingHours {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("working hours `{s}`: {why}; write them like `Mon-Fri 07:00-19:00`")
        };
        let (days_text, hours_text) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("days and hours are separated by a space"))?;
        let mut days = [false; 7];
        for part in days_text.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (Some(a), Some(b)) = (day_index(from), day_index(to)) else {
                return Err(bad("days are Mon, Tue, Wed, Thu, Fri, Sat, Sun"));
            };
            if a > b {
                return Err(bad("a range of days runs from Monday towards Sunday"));
            }
            days[a..=b].iter_mut().for_each(|d| *d = true);
        }
        let (open, close) = hours_text
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("hours are HH:MM-HH:MM"))?;
        let (Some(open_min), Some(close_min)) = (minutes(open), minutes(close)) else {
            return Err(bad("hours are HH:MM-HH:MM, 00:00 to 24:00"));
        };
        if open_min >= close_min {
            return Err(bad("the day's hours must open before they close"));
        }
        Ok(Self {
            text: s.trim().to_owned(),
            days,
            open_min,
            close_min,
        })
    }

    /// Whether a local time falls within these hours.
    pub fn contains(&self, local: NaiveDateTime) -> bool {
        let day = local.weekday().num_days_from_monday() as usize;
        let min = local.hour() * 60 + local.minute();
        self.days[day] && (self.open_min..self.close_min).contains(&min)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }?;
    let last = next.pred_opt()?;
    Some(last - Duration::days(i64::from(last.weekday().num_days_from_sunday())))
}

/// UK local time (Europe/London) by the fixed rule of the Summer Time Order 2002: British
/// Summer Time (UTC+1) from 01:00 UTC on the last Sunday in March to 01:00 UTC on the last
/// Sunday in October; Greenwich Mean Time otherwise. (No time zone database is compiled in:
/// should Parliament change the rule, this function and its tests change with it.)
pub fn uk_local(t: DateTime<Utc>) -> NaiveDateTime {
    let y = t.year();
    let at_one = |d: NaiveDate| d.and_hms_opt(1, 0, 0).map(|x| x.and_utc());
    let summer = match (
        last_sunday(y, 3).and_then(at_one),
        last_sunday(y, 10).and_then(at_one),
    ) {
        (Some(start), Some(end)) => t >= start && t < end,
        _ => false,
    };
    let offset = if summer { 1 } else { 0 };
    (t + Duration::hours(offset)).naive_utc()
}
