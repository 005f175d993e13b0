//! The controller's HTTP routes: transport, queue, speakers (volume and mute are forwarded to
//! the speaker concerned).

use super::queue::{self, QueueError};
use super::registry::SpeakerInfo;
use super::streamer::{Command, ZoneStatus};
use super::{Registry, StreamerHandle};
use crate::api::bodies::check_volume;
use crate::api::{body, ApiError, ApiResult};
use crate::clock::{ControllerNs, SharedClock};
use crate::config::ZoneAddr;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chorus_api::SpeakerStatus;
use chorus_api::{AddBody, MoveBody, MuteBody, PlayBody, QueueView, RepeatBody, SeekBody};
use chorus_api::{SpeakerList, SpeakerZoneBody, VolumeBody, ZoneEntry, ZoneList};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// A zone the controller streams.
pub(crate) struct ZoneHandle {
    pub addr: ZoneAddr,
    pub streamer: Arc<StreamerHandle>,
}

/// What the controller's handlers share.
pub(crate) struct Ctx {
    /// The zones, `[zone]` first (the one calls without `?zone=` act on).
    pub zones: Vec<ZoneHandle>,
    pub registry: Arc<Registry>,
    pub clock: SharedClock,
    /// Counters of the clock-sync service.
    pub sync_stats: Arc<chorus_api::SyncServiceCounters>,
    /// The API token: calls forwarded to speakers are signed with it (it is never sent).
    pub token: Option<String>,
    /// Where state changes are published (volume changes made here at once).
    pub events: Arc<crate::api::events::Events>,
    /// mDNS: what announces itself on the network (None: discovery off).
    pub discovery: std::sync::OnceLock<Arc<crate::discovery::Discovery>>,
    /// The folders `play` and `queue add` take files from.
    pub media_roots: queue::MediaRoots,
}

impl Ctx {
    fn now(&self) -> ControllerNs {
        ControllerNs(self.clock.now().0)
    }
    /// Status of a zone.
    pub(crate) fn zone_status(&self, z: Zoned) -> Result<ZoneStatus, ApiError> {
        self.zones[z.0]
            .streamer
            .status()
            .ok_or_else(|| ApiError::internal("streamer state unavailable"))
    }
    /// Known speakers, each with the zone whose stream it plays.
    pub(crate) fn speakers(&self) -> Vec<SpeakerInfo> {
        let mut list = self.registry.list(self.now());
        for s in &mut list {
            s.zone = s.stream.as_deref().and_then(|st| {
                self.zones
                    .iter()
                    .find(|z| z.addr.stream() == st)
                    .map(|z| z.addr.name.clone())
            });
        }
        list
    }
    /// The zone named `name`.
    pub(crate) fn find_zone(&self, name: &str) -> Result<Zoned, ApiError> {
        self.zones
            .iter()
            .position(|z| z.addr.name == name)
            .map(Zoned)
            .ok_or_else(|| {
                let names: Vec<&str> = self.zones.iter().map(|z| z.addr.name.as_str()).collect();
                ApiError::not_found(format!("no zone named {name:?} (zones: {names:?})"))
            })
    }
}

/// The zone a call acts on: `?zone=NAME`, or the first zone without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Zoned(pub usize);

/// `?zone=NAME`: the zone a call acts on (the API document's parameter too).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ZoneQuery {
    /// The zone, by name (default: the first).
    pub(crate) zone: Option<String>,
}

impl FromRequestParts<Arc<Ctx>> for Zoned {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Ctx>) -> Result<Self, ApiError> {
        let Query(q) = Query::<ZoneQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
        match q.zone {
            None => Ok(Zoned(0)),
            Some(name) => c.find_zone(&name),
        }
    }
}

impl Ctx {
    fn speaker_list(&self) -> SpeakerList {
        let speakers = self.speakers();
        let discovered = self
            .discovery
            .get()
            .map(|d| d.found())
            .unwrap_or_default()
            .into_iter()
            .filter(|f| {
                f.role.contains("speaker")
                    && self.zones.iter().any(|z| z.addr.name == f.zone)
                    && !speakers.iter().any(|s| s.name == f.name)
            })
            .collect();
        SpeakerList {
            speakers,
            discovered,
        }
    }
}

#[path = "api_queue.rs"]
mod queue_routes;
#[path = "api_speakers.rs"]
mod speaker_routes;
use queue_routes::*;
use speaker_routes::*;

/// The controller's routes, in the API document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    zone,
    zones,
    speaker_routes::speakers,
    speaker_routes::speaker,
    speaker_routes::speaker_volume,
    speaker_routes::speaker_mute,
    speaker_routes::speaker_zone,
    speaker_routes::all_volume,
    play,
    pause,
    resume,
    stop,
    next,
    previous,
    seek,
    queue_routes::queue_get,
    queue_routes::queue_add,
    queue_routes::queue_clear,
    queue_routes::queue_remove,
    queue_routes::queue_move,
    queue_routes::queue_shuffle,
    queue_routes::repeat,
    zone_volume,
    zone_mute
))]
pub(crate) struct Doc;

/// Routes of a controller.
pub(crate) fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/api/v1/zone", get(zone))
        .route("/api/v1/speakers", get(speakers))
        .route("/api/v1/speakers/{name}", get(speaker))
        .route("/api/v1/speakers/{name}/volume", put(speaker_volume))
        .route("/api/v1/speakers/{name}/mute", put(speaker_mute))
        .route("/api/v1/volume", put(all_volume))
        .route("/api/v1/play", post(play))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/stop", post(stop))
        .route("/api/v1/next", post(next))
        .route("/api/v1/previous", post(previous))
        .route("/api/v1/seek", post(seek))
        .route(
            "/api/v1/queue",
            get(queue_get).post(queue_add).delete(queue_clear),
        )
        .route("/api/v1/queue/{position}", delete(queue_remove))
        .route("/api/v1/queue/move", post(queue_move))
        .route("/api/v1/queue/shuffle", post(queue_shuffle))
        .route("/api/v1/repeat", put(repeat))
        .route("/api/v1/zone/volume", put(zone_volume))
        .route("/api/v1/zone/mute", put(zone_mute))
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/speakers/{name}/zone", put(speaker_zone))
        .with_state(ctx)
}

#[utoipa::path(
    get,
    path = "/api/v1/zone",
    summary = "Zone status: transport, queue, now playing, stream format",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status", body = chorus_api::ZoneStatus),
    )
)]
async fn zone(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    Ok(Json(c.zone_status(z)?))
}

#[utoipa::path(
    get,
    path = "/api/v1/zones",
    summary = "The controller's zones: stream, what plays, which speakers play it",
    responses(
        (status = 200, description = "zone list", body = chorus_api::ZoneList),
    )
)]
async fn zones(State(c): State<Arc<Ctx>>) -> Json<ZoneList> {
    let speakers = c.speakers();
    Json(ZoneList {
        zones: c
            .zones
            .iter()
            .map(|z| {
                let st = z.streamer.status();
                ZoneEntry {
                    name: z.addr.name.clone(),
                    stream: z.addr.stream(),
                    state: st.as_ref().map(|s| s.state),
                    title: st.as_ref().and_then(|s| s.title.clone()),
                    volume: st.as_ref().map(|s| s.volume),
                    muted: st.as_ref().map(|s| s.muted),
                    speakers: speakers
                        .iter()
                        .filter(|s| s.zone.as_deref() == Some(z.addr.name.as_str()))
                        .map(|s| s.name.clone())
                        .collect(),
                }
            })
            .collect(),
    })
}

/// Sends a command to a zone's streamer and answers with the zone's status once the command has
/// taken effect (after its fade, 30 ms by default), or after a second at most.
async fn send(c: &Ctx, z: Zoned, cmd: Command) -> ApiResult<ZoneStatus> {
    let Some(done) = c.zones[z.0].streamer.send_then(cmd) else {
        return Err(ApiError::internal("streamer is not running"));
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
    Ok(Json(c.zone_status(z)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/play",
    summary = "Replace the queue with a file, folder or .m3u on the controller's box and play it",
    params(ZoneQuery),
    request_body = chorus_api::PlayBody,
    responses(
        (status = 200, description = "zone status", body = chorus_api::ZoneStatus),
        (status = 403, description = "the path lies outside the folders this controller plays from ([controller] media-roots)", body = chorus_api::ErrorBody),
        (status = 404, description = "nothing at that path; or no zone of that name", body = chorus_api::ErrorBody),
        (status = 422, description = "nothing playable there (empty folder, unreadable playlist)", body = chorus_api::ErrorBody),
    )
)]
async fn play(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<PlayBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let uri = body(b)?.uri;
    let items = expand(&c, &uri).await?;
    send(&c, z, Command::Play { uri, items }).await
}

/// A URI's items, or the API error that says why there are none. The file system is read on a
/// blocking thread: a folder of a slow disk (or a loop of symlinks, before the walk stopped
/// following them) held an API worker for as long as the walk took.
async fn expand(c: &Ctx, uri: &str) -> Result<Vec<crate::audio::Item>, ApiError> {
    let (uri, roots) = (uri.to_string(), c.media_roots.clone());
    let found = tokio::task::spawn_blocking(move || queue::expand(&uri, &roots))
        .await
        .map_err(|_| ApiError::internal("the folder walk failed"))?;
    found.map_err(|e| match e {
        QueueError::Outside(_) => ApiError::forbidden(e.to_string()),
        QueueError::NotFound(_) => ApiError::not_found(e.to_string()),
        QueueError::UnsupportedScheme(_) => ApiError::bad_request(e.to_string()),
        QueueError::Empty(_) | QueueError::Read { .. } => ApiError::unprocessable(e.to_string()),
    })
}

#[utoipa::path(
    put,
    path = "/api/v1/zone/volume",
    summary = "Zone volume: scales every speaker of the zone (glides over 30 ms; 100: the stream untouched)",
    params(ZoneQuery),
    request_body = chorus_api::VolumeBody,
    responses(
        (status = 200, description = "zone status", body = chorus_api::ZoneStatus),
    )
)]
async fn zone_volume(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let v = check_volume(body(b)?.volume)?;
    send(&c, z, Command::ZoneVolume(v)).await
}

#[utoipa::path(
    put,
    path = "/api/v1/zone/mute",
    summary = "Mute or unmute the whole zone",
    params(ZoneQuery),
    request_body = chorus_api::MuteBody,
    responses(
        (status = 200, description = "zone status", body = chorus_api::ZoneStatus),
    )
)]
async fn zone_mute(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let m = body(b)?.muted;
    send(&c, z, Command::ZoneMute(m)).await
}

#[utoipa::path(
    post,
    path = "/api/v1/pause",
    summary = "Pause (fades out)",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status after the command", body = chorus_api::ZoneStatus),
    )
)]
async fn pause(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Pause).await
}
#[utoipa::path(
    post,
    path = "/api/v1/resume",
    summary = "Resume (fades in)",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status after the command", body = chorus_api::ZoneStatus),
    )
)]
async fn resume(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Resume).await
}
#[utoipa::path(
    post,
    path = "/api/v1/stop",
    summary = "Stop",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status after the command", body = chorus_api::ZoneStatus),
    )
)]
async fn stop(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Stop).await
}
#[utoipa::path(
    post,
    path = "/api/v1/next",
    summary = "Next item of the queue",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status after the command", body = chorus_api::ZoneStatus),
    )
)]
async fn next(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Next).await
}
#[utoipa::path(
    post,
    path = "/api/v1/previous",
    summary = "Previous item of the queue",
    params(ZoneQuery),
    responses(
        (status = 200, description = "zone status after the command", body = chorus_api::ZoneStatus),
    )
)]
async fn previous(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Previous).await
}

#[utoipa::path(
    post,
    path = "/api/v1/seek",
    summary = "Seek within the current item",
    params(ZoneQuery),
    request_body = chorus_api::SeekBody,
    responses(
        (status = 200, description = "zone status", body = chorus_api::ZoneStatus),
        (status = 409, description = "nothing is playing", body = chorus_api::ErrorBody),
        (status = 422, description = "negative, or past the end", body = chorus_api::ErrorBody),
    )
)]
async fn seek(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<SeekBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let pos = body(b)?.position_s;
    if !pos.is_finite() || pos < 0.0 {
        return Err(ApiError::unprocessable(format!(
            "position {pos} must be a non-negative number of seconds"
        )));
    }
    let status = c.zone_status(z)?;
    if status.title.is_none() {
        return Err(ApiError::conflict(
            "nothing to seek in: the queue is stopped",
        ));
    }
    if let Some(d) = status.duration_s {
        if pos > d {
            return Err(ApiError::unprocessable(format!(
                "position {pos} s is past the end ({d:.3} s)"
            )));
        }
    }
    send(&c, z, Command::Seek(pos)).await
}
