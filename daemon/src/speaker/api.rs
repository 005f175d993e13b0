//! The speaker's HTTP routes (under /api/v1/speaker).

use super::{Shared, SpeakerStatus, ZoneAddr};
use crate::api::bodies::{check_volume, LatencyBody, MuteBody, VolumeBody};
use crate::api::{body, ApiError, ApiResult};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Routes of a speaker.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/speaker", get(status))
        .route("/api/v1/speaker/volume", put(volume))
        .route("/api/v1/speaker/mute", put(mute))
        .route("/api/v1/speaker/latency", put(latency))
        .route("/api/v1/speaker/zone", put(zone))
        .with_state(shared)
}

async fn status(State(s): State<Arc<Shared>>) -> Json<SpeakerStatus> {
    Json(s.status())
}

async fn volume(
    State(s): State<Arc<Shared>>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let v = check_volume(body(b)?.volume)?;
    s.set_volume(Some(v), None);
    log::info!("volume {v}");
    Ok(Json(s.status()))
}

async fn mute(
    State(s): State<Arc<Shared>>,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let m = body(b)?.muted;
    s.set_volume(None, Some(m));
    log::info!("muted {m}");
    Ok(Json(s.status()))
}

/// A move to another zone's stream (the controller sends these: it knows where each zone is).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneBody {
    pub zone: String,
    pub group: String,
    pub port: u16,
}

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
