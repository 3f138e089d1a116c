//! Static assets, embedded in the binary so the product runs from any directory with no npm:
//! the vendored NHS design system (see `assets/nhsuk-frontend/README.md`) and our own small
//! CSS and JavaScript. Served with a long cache lifetime (overriding the global `no-store`);
//! pages add `?v=` with a hash of the contents so a new build is never served a stale copy.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../../assets/", $file)),
        }
    };
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

static ASSETS: &[Asset] = &[
    asset!(
        "nhsuk-frontend/nhsuk-frontend.min.css",
        "nhsuk-frontend/nhsuk-frontend.min.css",
        CSS
    ),
    asset!(
        "nhsuk-frontend/nhsuk-frontend.min.js",
        "nhsuk-frontend/nhsuk-frontend.min.js",
        JS
    ),
    // The design system's CSS refers to its images as `/assets/images/...`.
    asset!(
        "images/favicon.ico",
        "nhsuk-frontend/images/favicon.ico",
        "image/x-icon"
    ),
    asset!(
        "images/favicon.svg",
        "nhsuk-frontend/images/favicon.svg",
        SVG
    ),
    asset!(
        "images/nhsuk-icon-mask.svg",
        "nhsuk-frontend/images/nhsuk-icon-mask.svg",
        SVG
    ),
    asset!(
        "images/nhsuk-icon-180.png",
        "nhsuk-frontend/images/nhsuk-icon-180.png",
        "image/png"
    ),
    asset!(
        "images/nhsuk-icon-arrow-down.svg",
        "nhsuk-frontend/images/nhsuk-icon-arrow-down.svg",
        SVG
    ),
    asset!(
        "images/nhsuk-icon-arrow-up.svg",
        "nhsuk-frontend/images/nhsuk-icon-arrow-up.svg",
        SVG
    ),
    asset!(
        "images/nhsuk-icon-arrow-up-down.svg",
        "nhsuk-frontend/images/nhsuk-icon-arrow-up-down.svg",
        SVG
    ),
    asset!(
        "images/nhsuk-icon-cross.svg",
        "nhsuk-frontend/images/nhsuk-icon-cross.svg",
        SVG
    ),
    asset!("app.css", "app.css", CSS),
    asset!("app.js", "app.js", JS),
    asset!("js-enabled.js", "js-enabled.js", JS),
];

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// A short hash of every asset's bytes (FNV-1a), computed once.
pub(crate) fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for a in ASSETS {
            for b in a.body {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:012x}", h & 0xffff_ffff_ffff)
    });
    &VERSION
}

fn serve(a: &Asset) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        a.body,
    )
        .into_response()
}

pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    match find(&path) {
        Some(a) => serve(a),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Not found",
        )
            .into_response(),
    }
}

pub(crate) async fn favicon() -> Response {
    match find("images/favicon.ico") {
        Some(a) => serve(a),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_present_and_typed() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(
                [CSS, JS, SVG, "image/png", "image/x-icon"].contains(&a.content_type),
                "{}",
                a.path
            );
        }
        assert!(find("app.css").is_some());
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn images_the_css_refers_to_are_served() {
        let css = std::str::from_utf8(
            find("nhsuk-frontend/nhsuk-frontend.min.css")
                .map(|a| a.body)
                .unwrap_or_default(),
        )
        .expect("the CSS is UTF-8");
        for part in css.split("url(/assets/").skip(1) {
            let path = part.split(')').next().unwrap_or_default();
            assert!(
                find(path).is_some(),
                "the CSS refers to /assets/{path}, which is not served"
            );
        }
    }

    #[test]
    fn version_is_stable() {
        assert_eq!(version(), version());
        assert_eq!(version().len(), 12);
    }
}
