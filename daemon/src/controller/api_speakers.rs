//! The controller's speaker routes: the list, one speaker, and the calls forwarded to a
//! speaker's own API (volume, mute, a move to another zone), signed, never with the token.

use super::*;

/// `{name}` in a speaker's routes (the extractor and the API document's parameter).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SpeakerName {
    /// The speaker, by the name it reports.
    name: String,
}

/// Moves a speaker to another zone: the speaker joins that zone's stream and switches to it at
/// a frame boundary once it is due (no gap, a short crossing fade).
#[utoipa::path(
    put,
    path = "/api/v1/speakers/{name}/zone",
    summary = "Move a speaker to another zone: it joins that zone's stream and switches to it at a frame boundary once it is due (no gap, a 10 ms fade across)",
    params(SpeakerName),
    request_body = chorus_api::SpeakerZoneBody,
    responses(
        (status = 200, description = "the speaker's status (its zone is the new one; `switching` until the new stream plays)", body = chorus_api::SpeakerStatus),
        (status = 404, description = "no speaker of that name, or no zone of that name", body = chorus_api::ErrorBody),
        (status = 422, description = "a field missing, unknown or of the wrong type", body = chorus_api::ErrorBody),
        (status = 502, description = "the speaker did not answer", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn speaker_zone(
    State(c): State<Arc<Ctx>>,
    Path(SpeakerName { name }): Path<SpeakerName>,
    b: Result<Json<SpeakerZoneBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let want = body(b)?.zone;
    let z = c.find_zone(&want)?;
    let info = find(&c, &name)?;
    let addr = &c.zones[z.0].addr;
    let answer = forward(
        &c,
        &info,
        "/api/v1/speaker/zone",
        chorus_api::ZoneBody {
            zone: addr.name.clone(),
            group: addr.group.to_string(),
            port: addr.port,
        },
    )
    .await?;
    // The event watcher reports the move ("moved") from here on.
    c.registry.note_stream(&info.name, addr.stream());
    Ok(Json(answer))
}

#[utoipa::path(
    get,
    path = "/api/v1/speakers",
    summary = "Speakers heard from (heartbeats), online or not",
    responses(
        (status = 200, description = "speaker list", body = chorus_api::SpeakerList),
    )
)]
pub(super) async fn speakers(State(c): State<Arc<Ctx>>) -> Json<SpeakerList> {
    Json(c.speaker_list())
}

pub(super) fn find(c: &Ctx, name: &str) -> Result<SpeakerInfo, ApiError> {
    c.speakers()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no speaker named {name:?}")))
}

#[utoipa::path(
    get,
    path = "/api/v1/speakers/{name}",
    summary = "One speaker as the controller knows it",
    params(SpeakerName),
    responses(
        (status = 200, description = "the speaker", body = chorus_api::SpeakerInfo),
        (status = 404, description = "no speaker of that name", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn speaker(
    State(c): State<Arc<Ctx>>,
    Path(SpeakerName { name }): Path<SpeakerName>,
) -> ApiResult<SpeakerInfo> {
    Ok(Json(find(&c, &name)?))
}

/// Forwards a PUT to a speaker's own API.
pub(super) async fn forward(
    c: &Ctx,
    info: &SpeakerInfo,
    path: &str,
    payload: impl serde::Serialize,
) -> Result<SpeakerStatus, ApiError> {
    let url = format!("{}{}", info.api_url, path);
    let name = info.name.clone();
    let token = c.token.clone();
    let path = path.to_string();
    let body = serde_json::to_string(&payload).map_err(|e| ApiError::internal(e.to_string()))?;
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(3))
            .redirects(0)
            .build();
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
                .into_json::<SpeakerStatus>()
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
    let (volume, muted) = (answer.volume.min(100), answer.muted);
    c.registry.note_volume(&info.name, volume, muted);
    c.events.publish(chorus_api::Event::SpeakerVolume {
        speaker: info.name.clone(),
        volume,
        muted,
    });
    Ok(answer)
}

#[utoipa::path(
    put,
    path = "/api/v1/speakers/{name}/volume",
    summary = "Set a speaker's volume (forwarded to it)",
    params(SpeakerName),
    request_body = chorus_api::VolumeBody,
    responses(
        (status = 200, description = "the speaker's status", body = chorus_api::SpeakerStatus),
        (status = 404, description = "no speaker of that name", body = chorus_api::ErrorBody),
        (status = 422, description = "volume outside 0..=100", body = chorus_api::ErrorBody),
        (status = 502, description = "the speaker did not answer", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn speaker_volume(
    State(c): State<Arc<Ctx>>,
    Path(SpeakerName { name }): Path<SpeakerName>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let v = check_volume(body(b)?.volume)?;
    let info = find(&c, &name)?;
    Ok(Json(
        forward(
            &c,
            &info,
            "/api/v1/speaker/volume",
            VolumeBody { volume: v.into() },
        )
        .await?,
    ))
}

#[utoipa::path(
    put,
    path = "/api/v1/speakers/{name}/mute",
    summary = "Mute or unmute a speaker (forwarded to it)",
    params(SpeakerName),
    request_body = chorus_api::MuteBody,
    responses(
        (status = 200, description = "the speaker's status", body = chorus_api::SpeakerStatus),
        (status = 404, description = "no speaker of that name", body = chorus_api::ErrorBody),
        (status = 502, description = "the speaker did not answer", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn speaker_mute(
    State(c): State<Arc<Ctx>>,
    Path(SpeakerName { name }): Path<SpeakerName>,
    b: Result<Json<MuteBody>, JsonRejection>,
) -> ApiResult<SpeakerStatus> {
    let m = body(b)?.muted;
    let info = find(&c, &name)?;
    Ok(Json(
        forward(&c, &info, "/api/v1/speaker/mute", MuteBody { muted: m }).await?,
    ))
}

#[utoipa::path(
    put,
    path = "/api/v1/volume",
    summary = "Set every online speaker's volume",
    request_body = chorus_api::VolumeBody,
    responses(
        (status = 200, description = "speaker list", body = chorus_api::SpeakerList),
        (status = 422, description = "volume outside 0..=100", body = chorus_api::ErrorBody),
        (status = 502, description = "a speaker did not answer", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn all_volume(
    State(c): State<Arc<Ctx>>,
    b: Result<Json<VolumeBody>, JsonRejection>,
) -> ApiResult<SpeakerList> {
    let v = check_volume(body(b)?.volume)?;
    for info in c.speakers().into_iter().filter(|s| s.online) {
        forward(
            &c,
            &info,
            "/api/v1/speaker/volume",
            VolumeBody { volume: v.into() },
        )
        .await?;
    }
    Ok(Json(c.speaker_list()))
}
