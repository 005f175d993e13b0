//! The routes every role serves besides its own: status, metrics, events, and the API's
//! guard around them all.

use super::*;

pub(super) fn router(roles: Roles, guard: Arc<api::guard::Guard>) -> Router {
    let roles = Arc::new(roles);
    let mut app = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/openapi.json", get(api::openapi))
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

/// `GET /api/v1/events`: Server-Sent Events of state changes (see api::events).
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
async fn metrics(State(roles): State<Arc<Roles>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&roles),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    zone: Option<String>,
}

async fn status(
    State(roles): State<Arc<Roles>>,
    q: Result<axum::extract::Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, api::ApiError> {
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
        names.push("controller");
        json!({
            "zone": c.zone_status(zone).ok(),
            "zones": c.zones.iter().map(|z| z.addr.name.clone()).collect::<Vec<_>>(),
            "speakers": c.speakers(),
            "clock_ns": ControllerNs(c.clock.now().0).0,
            "sync_service": c.sync_stats.snapshot(),
        })
    });
    let speaker = roles.speaker.as_ref().map(|s| {
        names.push("speaker");
        s.status()
    });
    // For measurement across hosts or namespaces that share a realtime clock: this process's
    // clock and (on a speaker) its estimate of the controller's, read together with realtime.
    let local = roles.clock.now();
    let realtime = crate::clock::realtime_ns_for_measurement();
    let estimate = roles
        .speaker
        .as_ref()
        .and_then(|s| s.snapshot.lock().ok().and_then(|g| *g))
        .map(|snap| snap.to_controller(local).0);
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "roles": names,
        "controller": controller,
        "speaker": speaker,
        "timing": {
            "realtime_ns": realtime,
            "clock_ns": local.0,
            "controller_estimate_ns": estimate,
        },
    })))
}
