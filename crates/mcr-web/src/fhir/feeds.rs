//! `GET /feeds/held`: the feed messages (HL7 v2 ADT) that were answered with an error and kept
//! for review, newest first: envelope and reason only. Privacy officers (data quality staff)
//! only; audited by the gateway.

use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;

pub(crate) async fn held(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        None => 100,
        Some(l) => l.parse::<u32>().map_err(|_| {
            ApiError::invalid(
                "invalid-parameter",
                "limit must be a whole number, e.g. 100.",
            )
        })?,
    };
    let held = state.gateway.held_messages(&ctx, limit).await?;
    let body = json!({
        "held": held.iter().map(|h| json!({
            "receivedAt": h.received_at.to_rfc3339(),
            "channel": h.channel,
            "sender": h.sender,
            "messageType": h.message_type,
            "controlId": h.control_id,
            "ack": h.ack_code,
            "reason": h.reason,
        })).collect::<Vec<_>>(),
    });
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}
