//! Merging index persons, for records staff and privacy officers: the list of merges (and
//! their unmerges) beside the matching queue, a confirmation step that shows the two persons
//! side by side with what would move and asks for a reason, and the same for undoing a merge.
//! One gateway call per page; the gateway decides who may and audits every read and change.
//! Also the page a retired NHS number's record shows: where the person is now, nothing else.

use super::forms::{clean, Errors};
use super::text::human_day;
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::NhsNumber;
use mcr_gateway::{GatewayError, MergeSide, MERGE_REASON_MAX};
use mcr_store::MergeRow;
use serde::Deserialize;

/// One merge as the list shows it.
pub(crate) struct MergeView {
    pub id: i64,
    pub retired: String,
    pub survivor: String,
    pub survivor_raw: String,
    pub merged_at: String,
    pub merged_by: String,
    pub reason: String,
    pub moved: String,
    /// `None` while it stands.
    pub undone: Option<String>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn merge_view(m: &MergeRow) -> MergeView {
    let c = &m.counts;
    let mut moved = [
        plural(c.links_moved, "source record", "source records"),
        plural(c.care_events_moved, "care event", "care events"),
        plural(
            c.relationships_moved,
            "care relationship",
            "care relationships",
        ),
    ]
    .join(", ");
    moved.push_str(" moved");
    if c.objection_carried {
        moved.push_str("; the opt-out was carried over");
    }
    if c.protection_carried {
        moved.push_str("; protection was carried over");
    }
    if c.pairs_dropped > 0 {
        moved.push_str(&format!(
            "; {} waiting to be checked were set aside",
            plural(c.pairs_dropped, "pair", "pairs")
        ));
    }
    moved.push('.');
    MergeView {
        id: m.id,
        retired: m.retired.formatted(),
        survivor: m.survivor.formatted(),
        survivor_raw: m.survivor.to_string(),
        merged_at: m.merged_at.format("%-d %B %Y, %H:%M").to_string(),
        merged_by: m.merged_by.clone(),
        reason: m.reason.trim_end_matches('.').to_owned(),
        moved,
        undone: m.undone.as_ref().map(|u| {
            let c = &u.counts;
            let mut s = format!(
                "Undone {} by {}: {}. {} moved back",
                u.at.format("%-d %B %Y, %H:%M"),
                u.by,
                u.reason.trim_end_matches('.'),
                plural(c.links_back, "source record", "source records"),
            );
            if c.sent_to_review > 0 {
                s.push_str(&format!(
                    "; {} linked while merged sent to be checked",
                    plural(c.sent_to_review, "record", "records")
                ));
            }
            if c.objection_carried_back {
                s.push_str("; an opt-out recorded while merged applies to both");
            }
            s.push('.');
            s
        }),
    }
}

#[derive(Template)]
#[template(path = "app/merges.html")]
pub(crate) struct MergesPage {
    pub layout: Layout,
    pub merges: Vec<MergeView>,
    pub errors: Errors,
    pub retired: String,
    pub survivor: String,
    pub done: Option<i64>,
    pub undone: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct MergesQuery {
    #[serde(default)]
    done: Option<i64>,
    #[serde(default)]
    undone: Option<i64>,
}

async fn merges_page(
    state: &AppState,
    user: &PageUser,
    page: impl FnOnce(Vec<MergeView>) -> MergesPage,
) -> Response {
    match state.gateway.merges(&user.0).await {
        Ok(merges) => {
            let page = page(merges.iter().map(merge_view).collect());
            let status = if page.errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            render(status, &page)
        }
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

pub(crate) async fn list(
    user: PageUser,
    State(state): State<AppState>,
    Query(q): Query<MergesQuery>,
) -> Response {
    let layout = Layout::staff(&user);
    merges_page(&state, &user, |merges| MergesPage {
        layout,
        merges,
        errors: Errors::default(),
        retired: String::new(),
        survivor: String::new(),
        done: q.done,
        undone: q.undone,
    })
    .await
}

/// One side of the confirmation, as text.
pub(crate) struct SideView {
    pub nhs: String,
    pub nhs_formatted: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub postcode: String,
    pub practice: String,
    pub sources: Vec<String>,
    pub care: String,
    pub opted_out: bool,
    pub permissions: usize,
}

fn side_view(s: &MergeSide) -> SideView {
    let p = &s.patient;
    let or_none = |v: Option<&String>| {
        v.filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "Not recorded".into())
    };
    SideView {
        nhs: p.nhs_number.to_string(),
        nhs_formatted: p.nhs_number.formatted(),
        name: format!("{} {}", p.given, p.family.to_uppercase()),
        birth_date: human_day(p.birth_date),
        sex: or_none(p.gender.as_ref()),
        postcode: or_none(p.postcode.as_ref()),
        practice: or_none(p.gp_practice.as_ref()),
        sources: s
            .links
            .iter()
            .map(|(name, l)| format!("{name}: record {}", l.local_id))
            .collect(),
        care: format!(
            "{}, {}",
            plural(
                u64::try_from(s.care_events).unwrap_or(0),
                "care event",
                "care events"
            ),
            plural(
                u64::try_from(s.relationships).unwrap_or(0),
                "recorded care relationship",
                "recorded care relationships"
            )
        ),
        opted_out: s.objects,
        permissions: s.permissions,
    }
}

/// One compared field of the confirmation.
pub(crate) struct CompareRow {
    pub field: &'static str,
    pub retired: String,
    pub survivor: String,
    pub agrees: bool,
}

/// The fields a person is told of when they disagree (what tells two people apart).
fn compare(r: &SideView, s: &SideView) -> Vec<CompareRow> {
    let norm = |v: &str| v.trim().to_lowercase().replace(' ', "");
    [
        ("Name", &r.name, &s.name),
        ("Date of birth", &r.birth_date, &s.birth_date),
        ("Sex", &r.sex, &s.sex),
        ("Postcode", &r.postcode, &s.postcode),
        ("GP practice", &r.practice, &s.practice),
    ]
    .into_iter()
    .map(|(field, a, b)| CompareRow {
        field,
        retired: a.clone(),
        survivor: b.clone(),
        agrees: norm(a) == norm(b),
    })
    .collect()
}

#[derive(Template)]
#[template(path = "app/merge_confirm.html")]
pub(crate) struct ConfirmPage {
    pub layout: Layout,
    pub retired: SideView,
    pub survivor: SideView,
    pub rows: Vec<CompareRow>,
    /// The fields that disagree, in words (`date of birth and sex`), when birth date or sex
    /// do: the strongest signs of two people.
    pub warning: Option<String>,
    pub errors: Errors,
    pub reason: String,
    pub reason_max: usize,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PairQuery {
    #[serde(default)]
    retired: String,
    #[serde(default)]
    survivor: String,
}

/// The two numbers as typed, checked; the list page again with the errors if they are wrong.
fn parse_pair(q: &PairQuery) -> Result<(NhsNumber, NhsNumber), Errors> {
    let mut errors = Errors::default();
    let retired = NhsNumber::parse(&clean(&q.retired));
    let survivor = NhsNumber::parse(&clean(&q.survivor));
    if let Err(e) = &retired {
        errors.add("retired", format!("Enter the NHS number to retire: {e}"));
    }
    if let Err(e) = &survivor {
        errors.add("survivor", format!("Enter the NHS number to keep: {e}"));
    }
    match (retired, survivor) {
        (Ok(r), Ok(s)) if errors.is_empty() => Ok((r, s)),
        _ => Err(errors),
    }
}

async fn confirm_page(
    state: &AppState,
    user: &PageUser,
    q: &PairQuery,
    reason: String,
    errors: Errors,
) -> Response {
    let (retired, survivor) = match parse_pair(q) {
        Ok(pair) => pair,
        Err(errors) => return list_with_errors(state, user, q, errors).await,
    };
    match state
        .gateway
        .merge_preview(&user.0, &retired, &survivor)
        .await
    {
        Ok(preview) => {
            let (retired, survivor) = (side_view(&preview.retired), side_view(&preview.survivor));
            let rows = compare(&retired, &survivor);
            let differ: Vec<String> = rows
                .iter()
                .filter(|r| !r.agrees && matches!(r.field, "Date of birth" | "Sex"))
                .map(|r| r.field.to_lowercase())
                .collect();
            let warning = (!differ.is_empty()).then(|| differ.join(" and "));
            let status = if errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            render(
                status,
                &ConfirmPage {
                    layout: Layout::staff(user),
                    retired,
                    survivor,
                    rows,
                    warning,
                    errors,
                    reason,
                    reason_max: MERGE_REASON_MAX,
                },
            )
        }
        Err(GatewayError::Invalid(why)) => {
            let mut errors = Errors::default();
            errors.add("retired", sentence_case(&why));
            list_with_errors(state, user, q, errors).await
        }
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

async fn list_with_errors(
    state: &AppState,
    user: &PageUser,
    q: &PairQuery,
    errors: Errors,
) -> Response {
    let layout = Layout::staff(user);
    merges_page(state, user, |merges| MergesPage {
        layout,
        merges,
        errors,
        retired: clean(&q.retired),
        survivor: clean(&q.survivor),
        done: None,
        undone: None,
    })
    .await
}

pub(crate) async fn confirm(
    user: PageUser,
    State(state): State<AppState>,
    Query(q): Query<PairQuery>,
) -> Response {
    confirm_page(&state, &user, &q, String::new(), Errors::default()).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct MergeForm {
    #[serde(default)]
    retired: String,
    #[serde(default)]
    survivor: String,
    #[serde(default)]
    reason: String,
}

fn reason_errors(reason: &str) -> Errors {
    let mut errors = Errors::default();
    if reason.is_empty() {
        errors.add("reason", "Enter the reason");
    } else if reason.chars().count() > MERGE_REASON_MAX {
        errors.add(
            "reason",
            format!("The reason must be {MERGE_REASON_MAX} characters or fewer"),
        );
    }
    errors
}

pub(crate) async fn merge(
    user: PageUser,
    State(state): State<AppState>,
    Form(form): Form<MergeForm>,
) -> Response {
    let q = PairQuery {
        retired: form.retired,
        survivor: form.survivor,
    };
    let reason = clean(&form.reason);
    let errors = reason_errors(&reason);
    if !errors.is_empty() {
        return confirm_page(&state, &user, &q, reason, errors).await;
    }
    let (retired, survivor) = match parse_pair(&q) {
        Ok(pair) => pair,
        Err(errors) => return list_with_errors(&state, &user, &q, errors).await,
    };
    match state
        .gateway
        .merge_patients(&user.0, &retired, &survivor, &reason)
        .await
    {
        Ok(m) => Redirect::to(&format!("/app/matching/merges?done={}", m.id)).into_response(),
        Err(GatewayError::Invalid(why)) => {
            let mut errors = Errors::default();
            errors.add("reason", sentence_case(&why));
            confirm_page(&state, &user, &q, reason, errors).await
        }
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}

#[derive(Template)]
#[template(path = "app/unmerge_confirm.html")]
pub(crate) struct UnmergePage {
    pub layout: Layout,
    pub merge: MergeView,
    pub errors: Errors,
    pub reason: String,
    pub reason_max: usize,
}

async fn unmerge_page(
    state: &AppState,
    user: &PageUser,
    id: i64,
    reason: String,
    errors: Errors,
) -> Response {
    let merges = match state.gateway.merges(&user.0).await {
        Ok(m) => m,
        Err(e) => return gateway_error(Layout::staff(user), e),
    };
    let Some(m) = merges.iter().find(|m| m.id == id && m.undone.is_none()) else {
        return super::error_page(
            Layout::staff(user),
            StatusCode::NOT_FOUND,
            "There is no standing merge with that number: it may have been undone already.",
        );
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    render(
        status,
        &UnmergePage {
            layout: Layout::staff(user),
            merge: merge_view(m),
            errors,
            reason,
            reason_max: MERGE_REASON_MAX,
        },
    )
}

pub(crate) async fn unmerge_confirm(
    user: PageUser,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
    unmerge_page(&state, &user, id, String::new(), Errors::default()).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct UnmergeForm {
    #[serde(default)]
    reason: String,
}

pub(crate) async fn unmerge(
    user: PageUser,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<UnmergeForm>,
) -> Response {
    let reason = clean(&form.reason);
    let errors = reason_errors(&reason);
    if !errors.is_empty() {
        return unmerge_page(&state, &user, id, reason, errors).await;
    }
    match state.gateway.unmerge_patients(&user.0, id, &reason).await {
        Ok(m) => Redirect::to(&format!("/app/matching/merges?undone={}", m.id)).into_response(),
        Err(GatewayError::Invalid(why)) => {
            let mut errors = Errors::default();
            errors.add("reason", sentence_case(&why));
            unmerge_page(&state, &user, id, reason, errors).await
        }
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}

#[derive(Template)]
#[template(path = "app/merged.html")]
pub(crate) struct MergedPage {
    pub layout: Layout,
    pub retired: String,
    pub survivor: String,
    pub survivor_raw: String,
}

/// What a retired number's record page shows: the sentence and a link, nothing of either
/// record.
pub(crate) fn merged_page(layout: Layout, retired: &NhsNumber, survivor: &NhsNumber) -> Response {
    render(
        StatusCode::OK,
        &MergedPage {
            layout,
            retired: retired.formatted(),
            survivor: survivor.formatted(),
            survivor_raw: survivor.to_string(),
        },
    )
}
