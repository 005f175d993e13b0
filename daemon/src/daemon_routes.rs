//! The routes every role serves besides its own: status, metrics, events, and the API's
//! guard around them all.

use super::*;
use crate::controller::api::ZoneQuery;

/// The routes every role serves, in the API document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(status, events, metrics, openapi))]
pub(crate) struct CommonDoc;

pub(super) fn router(roles: Roles, guard: Arc<api::guard::Guard>) -> Router {
    let roles = Arc::new(roles);
    let mut app = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .with_state(roles.clone());
    if let Some(c) = &roles.controller {
        app = app.merge(controller::api::routes(c.clone()));
    }
    if let Some(s) = &roles.speaker {
        app = app.merge(speaker::api::routes(s.clone()));
    }
    app.fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            api::guard::check,
        ))
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    summary = "This document",
    responses(
        (status = 200, description = "the OpenAPI document", body = serde_json::Value),
    )
)]
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

/// `GET /api/v1/events`: Server-Sent Events of state changes (see api::events).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    summary = "Server-Sent Events of state changes: transport, track, volume, speaker (joined, left, locked, lost_sync), error",
    responses(
        (status = 200, description = "an endless text/event-stream; each event's data is a JSON object", body = String, content_type = "text/event-stream"),
    )
)]
async fn events(State(roles): State<Arc<Roles>>) -> impl axum::response::IntoResponse {
    roles.events.stream()
}

/// The metrics of the roles that run here, and the process's.
fn render_metrics(roles: &Roles) -> String {
    let mut m = api::metrics::Metrics::default();
    if let Some(c) = roles.controller.as_deref() {
        controller::metrics::write(c, &mut m);
    }
    if let Some(s) = roles.speaker.as_deref() {
        speaker::metrics::write(s, &mut m);
    }
    m.process();
    m.finish()
}

/// Prometheus metrics of whichever roles run here.
#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics of the roles running here",
    responses(
        (status = 200, description = "text exposition format 0.0.4", body = String, content_type = "text/plain"),
    )
)]
async fn metrics(State(roles): State<Arc<Roles>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&roles),
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/status",
    summary = "Roles running here, their status, clocks",
    params(ZoneQuery),
    responses(
        (status = 200, description = "status of every role", body = chorus_api::Status),
        (status = 404, description = "no zone of that name (or this daemon is no controller)", body = chorus_api::ErrorBody),
    )
)]
async fn status(
    State(roles): State<Arc<Roles>>,
    q: Result<axum::extract::Query<ZoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<chorus_api::Status>, api::ApiError> {
    let q = q.map_err(|e| api::ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let zone = match (&roles.controller, &q.zone) {
        (Some(c), Some(name)) => c.find_zone(name)?,
        (None, Some(_)) => {
            return Err(api::ApiError::not_found(
                "no zones here: this daemon is not a controller",
            ))
        }
        _ => controller::api::Zoned(0),
    };
    let mut names = vec![];
    let controller = roles.controller.as_ref().map(|c| {
        names.push("controller".to_string());
        chorus_api::ControllerStatus {
            zone: c.zone_status(zone).ok(),
            zones: c.zones.iter().map(|z| z.addr.name.clone()).collect(),
            speakers: c.speakers(),
            clock_ns: c.clock.now().0,
            sync_service: c.sync_stats.snapshot(),
        }
    });
    let speaker = roles.speaker.as_ref().map(|s| {
        names.push("speaker".to_string());
        s.status()
    });
    // For measurement across hosts or namespaces that share a realtime clock: this process's
    // clock and (on a speaker) its estimate of the controller's, read together with realtime.
    let local = roles.clock.now();
    let realtime_ns = crate::clock::realtime_ns_for_measurement();
    let controller_estimate_ns = roles
        .speaker
        .as_ref()
        .and_then(|s| s.snapshot.lock().ok().and_then(|g| *g))
        .map(|snap| snap.to_controller(local).0);
    Ok(Json(chorus_api::Status {
        version: env!("CARGO_PKG_VERSION").into(),
        roles: names,
        controller,
        speaker,
        timing: chorus_api::Timing {
            realtime_ns,
            clock_ns: local.0,
            controller_estimate_ns,
        },
    }))
}
