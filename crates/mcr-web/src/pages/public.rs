//! The public site: what My Care Record is, how it works, questions and answers, the privacy
//! notice. No sign-in, no patient data.

use super::{render, Layout};
use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Template)]
#[template(path = "public/home.html")]
pub(crate) struct Home {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "public/how_it_works.html")]
pub(crate) struct HowItWorks {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "public/questions.html")]
pub(crate) struct Questions {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "public/privacy.html")]
pub(crate) struct Privacy {
    pub layout: Layout,
}

pub(crate) async fn home() -> Response {
    render(
        StatusCode::OK,
        &Home {
            layout: Layout::public(),
        },
    )
}

pub(crate) async fn how_it_works() -> Response {
    render(
        StatusCode::OK,
        &HowItWorks {
            layout: Layout::public(),
        },
    )
}

pub(crate) async fn questions() -> Response {
    render(
        StatusCode::OK,
        &Questions {
            layout: Layout::public(),
        },
    )
}

pub(crate) async fn privacy() -> Response {
    render(
        StatusCode::OK,
        &Privacy {
            layout: Layout::public(),
        },
    )
}
