//! The controller's HTTP routes: transport, queue, speakers (volume and mute are forwarded to
//! the speaker concerned).

use super::queue::{self, QueueError};
use super::registry::SpeakerInfo;
use super::streamer::{Command, ZoneStatus};
use super::{Registry, StreamerHandle};
use crate::api::bodies::{check_volume, MuteBody, VolumeBody};
use crate::api::{body, ApiError, ApiResult};
use crate::clock::{ControllerNs, SharedClock};
use crate::config::ZoneAddr;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A zone the controller streams.
pub struct ZoneHandle {
    pub addr: ZoneAddr,
    pub streamer: Arc<StreamerHandle>,
}

/// What the controller's handlers share.
pub struct Ctx {
    /// The zones, `[zone]` first (the one calls without `?zone=` act on).
    pub zones: Vec<ZoneHandle>,
    pub registry: Arc<Registry>,
    pub clock: SharedClock,
    /// Counters of the clock-sync service.
    pub sync_stats: Arc<super::sync_service::ServerStats>,
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
    pub fn zone_status(&self, z: Zoned) -> Result<ZoneStatus, ApiError> {
        self.zones[z.0]
            .streamer
            .status()
            .ok_or_else(|| ApiError::internal("streamer state unavailable"))
    }
    /// Known speakers, each with the zone whose stream it plays.
    pub fn speakers(&self) -> Vec<SpeakerInfo> {
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
    pub fn find_zone(&self, name: &str) -> Result<Zoned, ApiError> {
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
pub struct Zoned(pub usize);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneQuery {
    zone: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    uri: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    position_s: f64,
}

#[derive(Serialize)]
struct SpeakerList {
    speakers: Vec<SpeakerInfo>,
    /// Speakers of this zone that announce themselves (mDNS) but send no heartbeats here.
    discovered: Vec<crate::discovery::Found>,
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

/// Routes of a controller.
pub fn routes(ctx: Arc<Ctx>) -> Router {
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

async fn zone(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    Ok(Json(c.zone_status(z)?))
}

/// A zone in the list of zones.
#[derive(Serialize)]
struct ZoneEntry {
    name: String,
    /// The zone's stream, `group:port`.
    stream: String,
    state: Option<super::streamer::TransportState>,
    title: Option<String>,
    volume: Option<u8>,
    muted: Option<bool>,
    /// Speakers playing this zone's stream.
    speakers: Vec<String>,
}

#[derive(Serialize)]
struct ZoneList {
    zones: Vec<ZoneEntry>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeakerZoneBody {
    zone: String,
}

/// Moves a speaker to another zone: the speaker joins that zone's stream and switches to it at
/// a frame boundary once it is due (no gap, a short crossing fade).
async fn speaker_zone(
    State(c): State<Arc<Ctx>>,
    Path(name): Path<String>,
    b: Result<Json<SpeakerZoneBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let want = body(b)?.zone;
    let z = c.find_zone(&want)?;
    let info = find(&c, &name)?;
    let addr = &c.zones[z.0].addr;
    let answer = forward(
        &c,
        &info,
        "/api/v1/speaker/zone",
        serde_json::json!({
            "zone": addr.name,
            "group": addr.group.to_string(),
            "port": addr.port,
        }),
    )
    .await?;
    // The event watcher reports the move ("moved") from here on.
    c.registry.note_stream(&info.name, addr.stream());
    Ok(Json(answer))
}

async fn speakers(State(c): State<Arc<Ctx>>) -> Json<SpeakerList> {
    Json(c.speaker_list())
}

fn find(c: &Ctx, name: &str) -> Result<SpeakerInfo, ApiError> {
    c.speakers()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no speaker named {name:?}")))
}

async fn speaker(State(c): State<Arc<Ctx>>, Path(name): Path<String>) -> ApiResult<SpeakerInfo> {
    Ok(Json(find(&c, &name)?))
}

/// Forwards a PUT to a speaker's own API.
async fn forward(
    c: &Ctx,
    info: &SpeakerInfo,
    path: &str,
    payload: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let url = format!("{}{}", info.api_url, path);
    let name = info.name.clone();
    let token = c.token.clone();
    let path = path.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(3))
            .redirects(0)
            .build();
        let body = payload.to_string();
        let mut req = agent.put(&url).set("Content-Type", "application/json");
        if let Some(t) = &token {
            // The address came from a heartbeat (UDP, forgeable): the token is not sent, only
            // a MAC under it for this one call.
            let nonce = rand::random::<u64>();
            let auth = crate::api::sign::sign(t.as_bytes(), "PUT", &path, nonce, body.as_bytes());
            req = req.set("Authorization", &auth);
        }
        match req.send_string(&body) {
            Ok(r) => r
                .into_json::<serde_json::Value>()
                .map_err(|e| ApiError::bad_gateway(format!("speaker {name}: {e}"))),
            // The answer's body is not shown: the address may be an impostor's.
            Err(ureq::Error::Status(code, _)) => Err(ApiError::bad_gateway(format!(
                "speaker {name} answered {code}"
            ))),
            Err(e) => Err(ApiError::bad_gateway(format!(
                "speaker {name} unreachable: {e}"
            ))),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    // The speaker's answer is its status: publish the volume at once (heartbeats, which the
    // event watcher also follows, come once a second).
    if let (Some(v), Some(m)) = (answer["volume"].as_u64(), answer["muted"].as_bool()) {
        c.registry.note_volume(&info.name, v.min(100) as u8, m);
        c.events.publish(crate::api::events::Event::SpeakerVolume {
            speaker: info.name.clone(),
            volume: v.min(100) as u8,
            muted: m,
        });
    }
    Ok(answer)
}

async fn speaker_volume(
    State(c): State<Arc<Ctx>>,
    Path(name): Path<String>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let v = check_volume(body(b)?.volume)?;
    let info = find(&c, &name)?;
    Ok(Json(
        forward(
            &c,
            &info,
            "/api/v1/speaker/volume",
            serde_json::json!({ "volume": v }),
        )
        .await?,
    ))
}

async fn speaker_mute(
    State(c): State<Arc<Ctx>>,
    Path(name): Path<String>,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let m = body(b)?.muted;
    let info = find(&c, &name)?;
    Ok(Json(
        forward(
            &c,
            &info,
            "/api/v1/speaker/mute",
            serde_json::json!({ "muted": m }),
        )
        .await?,
    ))
}

async fn all_volume(
    State(c): State<Arc<Ctx>>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<SpeakerList> {
    let v = check_volume(body(b)?.volume)?;
    for info in c.speakers().into_iter().filter(|s| s.online) {
        forward(
            &c,
            &info,
            "/api/v1/speaker/volume",
            serde_json::json!({ "volume": v }),
        )
        .await?;
    }
    Ok(Json(c.speaker_list()))
}

async fn send(c: &Ctx, z: Zoned, cmd: Command) -> ApiResult<ZoneStatus> {
    if !c.zones[z.0].streamer.send(cmd) {
        return Err(ApiError::internal("streamer is not running"));
    }
    // Give the streamer a moment so the answer reflects the command.
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(Json(c.zone_status(z)?))
}

async fn play(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<PlayBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let uri = body(b)?.uri;
    let items = expand(&c, &uri).await?;
    send(&c, z, Command::Play { uri, items }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    uri: String,
    /// 0-based position to insert at; absent: at the end.
    position: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    from: i64,
    to: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatBody {
    mode: super::streamer::Repeat,
}

#[derive(Serialize)]
struct QueueView {
    items: Vec<String>,
    /// The item playing or paused, 0-based.
    index: Option<usize>,
    repeat: super::streamer::Repeat,
}

fn queue_view(z: &ZoneStatus) -> QueueView {
    QueueView {
        items: z.queue.clone(),
        index: z.index,
        repeat: z.repeat,
    }
}

/// A 0-based position that must name an item of a queue of `len` (or, `end_ok`, the end).
fn position(p: i64, len: usize, end_ok: bool) -> Result<usize, ApiError> {
    let max = if end_ok { len } else { len.saturating_sub(1) };
    usize::try_from(p)
        .ok()
        .filter(|&p| p <= max && (end_ok || len > 0))
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "position {p} is not in the queue (0..={}{})",
                max,
                if len == 0 && !end_ok {
                    ", and it is empty"
                } else {
                    ""
                }
            ))
        })
}

async fn queue_get(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    Ok(Json(queue_view(&c.zone_status(z)?)))
}

async fn queue_cmd(c: &Ctx, z: Zoned, cmd: Command) -> ApiResult<QueueView> {
    let Json(status) = send(c, z, cmd).await?;
    Ok(Json(queue_view(&status)))
}

async fn queue_add(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<AddBody>, JsonRejection>,
) -> ApiResult<QueueView> {
    let b = body(b)?;
    let len = c.zone_status(z)?.queue.len();
    let at = b.position.map(|p| position(p, len, true)).transpose()?;
    let items = expand(&c, &b.uri).await?;
    queue_cmd(&c, z, Command::Add { at, items }).await
}

async fn queue_remove(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    Path(p): Path<String>,
) -> ApiResult<QueueView> {
    let p: i64 = p
        .parse()
        .map_err(|_| ApiError::unprocessable(format!("position {p:?} is not a number")))?;
    let at = position(p, c.zone_status(z)?.queue.len(), false)?;
    queue_cmd(&c, z, Command::Remove(at)).await
}

async fn queue_move(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<MoveBody>, JsonRejection>,
) -> ApiResult<QueueView> {
    let b = body(b)?;
    let len = c.zone_status(z)?.queue.len();
    let (from, to) = (position(b.from, len, false)?, position(b.to, len, false)?);
    queue_cmd(&c, z, Command::Move { from, to }).await
}

async fn queue_clear(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    queue_cmd(&c, z, Command::Clear).await
}

async fn queue_shuffle(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    queue_cmd(&c, z, Command::Shuffle).await
}

async fn repeat(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<RepeatBody>, JsonRejection>,
) -> ApiResult<QueueView> {
    let mode = body(b)?.mode;
    queue_cmd(&c, z, Command::SetRepeat(mode)).await
}

/// A URI's items, or the API error that says why there are none. The file system is read on a
/// blocking thread: a folder of a slow disk (or a loop of symlinks, before the walk stopped
/// following them) held an API worker for as long as the walk took.
async fn expand(c: &Ctx, uri: &str) -> Result<Vec<std::path::PathBuf>, ApiError> {
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

async fn zone_volume(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let v = check_volume(body(b)?.volume)?;
    send(&c, z, Command::ZoneVolume(v)).await
}

async fn zone_mute(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<ZoneStatus> {
    let m = body(b)?.muted;
    send(&c, z, Command::ZoneMute(m)).await
}

async fn pause(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Pause).await
}
async fn resume(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Resume).await
}
async fn stop(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Stop).await
}
async fn next(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Next).await
}
async fn previous(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<ZoneStatus> {
    send(&c, z, Command::Previous).await
}

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
