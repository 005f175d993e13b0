//! The speaker's HTTP routes (under /api/v1/speaker).

use super::{Shared, SpeakerStatus, ZoneAddr};
use crate::api::bodies::check_volume;
use crate::api::{body, ApiError, ApiResult};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use chorus_api::{LatencyBody, MuteBody, VolumeBody, ZoneBody};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The speaker's routes, in the API document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(status, volume, mute, latency, zone))]
pub(crate) struct Doc;

/// Routes of a speaker.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/speaker", get(status))
        .route("/api/v1/speaker/volume", put(volume))
        .route("/api/v1/speaker/mute", put(mute))
        .route("/api/v1/speaker/latency", put(latency))
        .route("/api/v1/speaker/zone", put(zone))
        .with_state(shared)
}

#[utoipa::path(
    get,
    path = "/api/v1/speaker",
    summary = "This speaker: clock, output, latency, playout, network counters",
    responses(
        (status = 200, description = "speaker status", body = chorus_api::SpeakerStatus),
    )
)]
async fn status(State(s): State<Arc<Shared>>) -> Json<SpeakerStatus> {
    Json(s.status())
}

#[utoipa::path(
    put,
    path = "/api/v1/speaker/volume",
    summary = "Set this speaker's volume (glides over 30 ms)",
    request_body = chorus_api::VolumeBody,
    responses(
        (status = 200, description = "speaker status", body = chorus_api::SpeakerStatus),
        (status = 422, description = "volume outside 0..=100", body = chorus_api::ErrorBody),
    )
)]
async fn volume(
    State(s): State<Arc<Shared>>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let v = check_volume(body(b)?.volume)?;
    s.set_volume(Some(v), None);
    log::info!("volume {v}");
    Ok(Json(s.status()))
}

#[utoipa::path(
    put,
    path = "/api/v1/speaker/mute",
    summary = "Mute or unmute this speaker",
    request_body = chorus_api::MuteBody,
    responses(
        (status = 200, description = "speaker status", body = chorus_api::SpeakerStatus),
    )
)]
async fn mute(
    State(s): State<Arc<Shared>>,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let m = body(b)?.muted;
    s.set_volume(None, Some(m));
    log::info!("muted {m}");
    Ok(Json(s.status()))
}

#[utoipa::path(
    put,
    path = "/api/v1/speaker/zone",
    summary = "Play another zone's stream (what the controller sends on a move)",
    request_body = chorus_api::ZoneBody,
    responses(
        (status = 200, description = "the speaker's status", body = chorus_api::SpeakerStatus),
        (status = 409, description = "the speaker is not receiving yet", body = chorus_api::ErrorBody),
        (status = 422, description = "zone empty or longer than 64 bytes, group not an IPv4 multicast address, port 0, a field missing, unknown or of the wrong type", body = chorus_api::ErrorBody),
        (status = 500, description = "the group could not be joined", body = chorus_api::ErrorBody),
    )
)]
async fn zone(
    State(s): State<Arc<Shared>>,
    b: Result<Json<ZoneBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let b = body(b)?;
    if b.zone.is_empty() || b.zone.len() > 64 {
        return Err(ApiError::unprocessable("zone must be 1..=64 bytes"));
    }
    let group = b
        .group
        .parse::<Ipv4Addr>()
        .ok()
        .filter(|g| g.is_multicast())
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "group {:?} is not an IPv4 multicast address",
                b.group
            ))
        })?;
    if b.port == 0 {
        return Err(ApiError::unprocessable("port must not be 0"));
    }
    let now = s.zone();
    if (now.group, now.port) == (group, b.port) {
        // Already there (a renamed zone keeps its stream).
        if let Ok(mut z) = s.zone.lock() {
            z.name = b.zone;
        }
        return Ok(Json(s.status()));
    }
    if s.receiving.get().is_none() {
        return Err(ApiError::conflict("the speaker is not receiving yet"));
    }
    let (sh, port) = (s.clone(), b.port);
    let switch = tokio::task::spawn_blocking(move || match sh.receiving.get() {
        Some(r) => r.open(group, port),
        None => Err(std::io::Error::other("not receiving")),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot join {group}:{}: {e}", b.port)))?;
    log::info!(
        "moving to zone {} ({group}:{}) from {} ({})",
        b.zone,
        b.port,
        now.name,
        now.stream()
    );
    if let Ok(mut pending) = s.switch.lock() {
        // A move asked before this one and not done yet is dropped.
        *pending = Some(switch);
        s.moving.store(true, Ordering::Relaxed);
    }
    if let Ok(mut z) = s.zone.lock() {
        *z = ZoneAddr {
            name: b.zone,
            group,
            port: b.port,
        };
    }
    Ok(Json(s.status()))
}

#[utoipa::path(
    put,
    path = "/api/v1/speaker/latency",
    summary = "Latency after the DAC (amplifier, DSP), subtracted from the schedule",
    request_body = chorus_api::LatencyBody,
    responses(
        (status = 200, description = "speaker status", body = chorus_api::SpeakerStatus),
        (status = 422, description = "outside 0..=1000 ms", body = chorus_api::ErrorBody),
    )
)]
async fn latency(
    State(s): State<Arc<Shared>>,
    b: Result<Json<LatencyBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let ms = body(b)?.extra_latency_ms;
    if !(0.0..=1000.0).contains(&ms) {
        return Err(ApiError::unprocessable(format!(
            "extra latency {ms} ms is outside 0..=1000"
        )));
    }
    s.extra_latency_us
        .store((ms * 1000.0) as i64, Ordering::Relaxed);
    Ok(Json(s.status()))
}
