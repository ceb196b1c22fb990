//! `POST /trigger-event`: a posted message, checked, broadcast to every
//! subscriber of the hub (SSE streams and chat WebSockets alike).

use super::broker::PublishError;
use super::App;
use crate::http::{Connection, HttpError, ReadError, RequestHead, Response};
use crate::json::{self, Json};
use crate::sse::format::check_field;
use crate::time;

/// Event types the server sends to one connection only: a broadcast must
/// not pose as them.
const RESERVED_TYPES: [&str; 3] = ["welcome", "initial_data", "reset"];

/// Reads the body, checks it and broadcasts it. An `Err` is a request
/// that could not be read (the connection ends after the answer); a bad
/// request that was read whole gets its `400` as an `Ok` answer.
pub fn trigger_event(
    conn: &mut Connection,
    head: &RequestHead,
    length: usize,
    app: &App,
) -> Result<Response, ReadError> {
    if let Some(content_type) = head.header("content-type") {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(HttpError::UnsupportedMediaType(format!(
                "send the body as application/json, not {media_type}"
            ))
            .into());
        }
    }
    let body = conn.read_body(head, length, app.body_limits())?;
    Ok(match parse_request(&body) {
        Ok(request) => broadcast(app, &request),
        Err(problem) => json_error(400, &problem),
    })
}

/// What a valid body asks for.
struct TriggerRequest {
    message: String,
    event_type: String,
    /// The SSE event name (`event:` line), when one was asked for.
    event_name: Option<String>,
}

/// Checks the body; the error is the text of the `400` answer.
fn parse_request(body: &[u8]) -> Result<TriggerRequest, String> {
    let request = json::parse(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    let message = match request.get("message") {
        Some(Json::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err("Message is required".into()),
    };
    let event_type = match request.get("type") {
        None => "notification".to_string(),
        Some(Json::String(t)) if RESERVED_TYPES.contains(&t.as_str()) => {
            return Err(format!("type {t:?} is reserved for the server"));
        }
        Some(Json::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err("type must be a non-empty string".into()),
    };
    let event_name = match request.get("event") {
        None => None,
        Some(Json::String(name)) if !name.is_empty() && check_field(name).is_ok() => {
            Some(name.clone())
        }
        Some(_) => return Err("event must be a non-empty string without line breaks".into()),
    };
    Ok(TriggerRequest {
        message,
        event_type,
        event_name,
    })
}

/// Publishes the event and says what happened.
fn broadcast(app: &App, request: &TriggerRequest) -> Response {
    let data = json::object([
        ("type", request.event_type.as_str().into()),
        ("message", request.message.as_str().into()),
        ("timestamp", time::now_iso8601().into()),
    ]);
    let name = request.event_name.as_deref();
    match app.publish(name, &data.to_string()) {
        Ok(published) => Response::json(
            200,
            &json::object([
                ("success", true.into()),
                ("message", "Event sent to all SSE clients".into()),
                ("id", published.id.into()),
                ("delivered", (published.delivered as u64).into()),
            ]),
        ),
        Err(PublishError::Refused(e)) => json_error(400, &e.to_string()),
        // The broker is down: not a 200 for an event nobody will get.
        Err(PublishError::Unavailable(why)) => json_error(503, &why).header("Retry-After", "1"),
    }
}

/// `{"error": "…"}` with a status: how this route answers every problem.
pub fn json_error(status: u16, message: &str) -> Response {
    Response::json(status, &json::object([("error", message.into())]))
}
