//! A small trend chart for repeated measurements, as inline SVG built on the server: no script,
//! no inline style (classes styled by `app.css`), every piece of text escaped here because the
//! template marks the result safe.

use super::text::escape_xml;
use std::fmt::Write;

/// One measurement: when (already in words) and the value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub label: String,
    pub value: f64,
}

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 15.0;
const BOTTOM: f64 = 35.0;

/// `12.50` -> `12.5`, `3.0` -> `3`.
pub(crate) fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// The chart for `points` (oldest first), or `None` when there are fewer than two usable
/// values. `id` must be unique on the page and is used for ARIA references; only ASCII
/// letters, digits and `-` are kept from it.
pub(crate) fn trend_svg(id: &str, title: &str, unit: &str, points: &[Point]) -> Option<String> {
    let points: Vec<&Point> = points.iter().filter(|p| p.value.is_finite()).collect();
    if points.len() < 2 {
        return None;
    }
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let min = points.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let max = points
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if (max - min).abs() < f64::EPSILON {
        1.0
    } else {
        max - min
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / (points.len() - 1) as f64;
    let xy = |i: usize, v: f64| -> (f64, f64) {
        let x = LEFT + step * i as f64;
        let y = if (max - min).abs() < f64::EPSILON {
            TOP + plot_h / 2.0
        } else {
            TOP + plot_h * (1.0 - (v - min) / span)
        };
        (x, y)
    };
    let unit_sfx = if unit.trim().is_empty() {
        String::new()
    } else {
        format!(" {}", unit.trim())
    };
    let first = &points[0].label;
    let last = &points[points.len() - 1].label;
    let desc = format!(
        "{} measurements from {} to {}. Lowest {}{}, highest {}{}, latest {}{}.",
        points.len(),
        first,
        last,
        number(min),
        unit_sfx,
        number(max),
        unit_sfx,
        number(points[points.len() - 1].value),
        unit_sfx
    );

    let mut svg = String::with_capacity(1024 + points.len() * 64);
    let _ = write!(
        svg,
        r#"<svg class="app-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-title {id}-desc" focusable="false"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape_xml(&format!("Trend: {title}")),
        escape_xml(&desc),
    );
    let _ = write!(
        svg,
        r#"<line class="app-chart__axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/><line class="app-chart__axis" x1="{LEFT}" y1="{}" x2="{}" y2="{}"/>"#,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
    );
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.value);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        r#"<polyline class="app-chart__line" points="{}"/>"#,
        coords.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        let (x, y) = xy(i, p.value);
        let _ = write!(
            svg,
            r#"<circle class="app-chart__point" cx="{x:.1}" cy="{y:.1}" r="3.5"><title>{}</title></circle>"#,
            escape_xml(&format!("{}: {}{}", p.label, number(p.value), unit_sfx))
        );
    }
    // Axis labels: highest and lowest values, first and last dates.
    let _ = write!(
        svg,
        r#"<text class="app-chart__label" x="{}" y="{}" text-anchor="end">{}</text><text class="app-chart__label" x="{}" y="{}" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        TOP + 4.0,
        escape_xml(&format!("{}{}", number(max), unit_sfx)),
        LEFT - 6.0,
        HEIGHT - BOTTOM,
        escape_xml(&format!("{}{}", number(min), unit_sfx)),
    );
    let _ = write!(
        svg,
        r#"<text class="app-chart__label" x="{LEFT}" y="{}" text-anchor="start">{}</text><text class="app-chart__label" x="{}" y="{}" text-anchor="end">{}</text></svg>"#,
        HEIGHT - 12.0,
        escape_xml(&super::text::clip(first, 24)),
        WIDTH - RIGHT,
        HEIGHT - 12.0,
        escape_xml(&super::text::clip(last, 24)),
    );
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                label: format!("day {i}"),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn needs_two_finite_points() {
        assert!(trend_svg("c1", "HbA1c", "mmol/mol", &pts(&[48.0])).is_none());
        assert!(trend_svg("c1", "HbA1c", "mmol/mol", &pts(&[48.0, f64::NAN])).is_none());
        assert!(trend_svg("c1", "HbA1c", "mmol/mol", &pts(&[48.0, 50.0])).is_some());
    }

    #[test]
    fn plots_every_point_with_a_description() {
        let svg =
            trend_svg("c1", "HbA1c", "mmol/mol", &pts(&[48.0, 52.5, 50.0])).unwrap_or_default();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("3 measurements from day 0 to day 2. Lowest 48 mmol/mol, highest 52.5 mmol/mol, latest 50 mmol/mol."));
        assert!(svg.contains(r#"aria-labelledby="c1-title c1-desc""#));
        // Highest value at the top of the plot, lowest at the bottom.
        assert!(svg.contains(r#"cx="70.0" cy="135.0""#), "{svg}");
        assert!(svg.contains(r#"cy="15.0""#), "{svg}");
        assert!(!svg.contains("style"));
    }

    #[test]
    fn flat_series_sits_in_the_middle() {
        let svg = trend_svg("c2", "Weight", "kg", &pts(&[70.0, 70.0])).unwrap_or_default();
        assert_eq!(svg.matches(r#"cy="75.0""#).count(), 2, "{svg}");
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut p = pts(&[1.0, 2.0]);
        p[0].label = "<script>alert(1)</script>".into();
        let svg = trend_svg(
            "x\"><script>",
            "<img src=x onerror=alert(1)>",
            "\"/><script>",
            &p,
        )
        .unwrap_or_default();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains(r#"id="xscript-title""#));
    }

    #[test]
    fn numbers_drop_trailing_zeros() {
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(-0.0), "0");
    }
}
