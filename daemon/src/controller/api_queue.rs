//! The controller's queue routes: what a zone plays next, edited while it plays.

use super::*;

pub(super) fn queue_view(z: &ZoneStatus) -> QueueView {
    QueueView {
        items: z.queue.clone(),
        index: z.index,
        repeat: z.repeat,
    }
}

/// A 0-based position that must name an item of a queue of `len` (or, `end_ok`, the end).
pub(super) fn position(p: i64, len: usize, end_ok: bool) -> Result<usize, ApiError> {
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

#[utoipa::path(
    get,
    path = "/api/v1/queue",
    summary = "The queue, the item playing (0-based) and the repeat mode",
    params(ZoneQuery),
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
    )
)]
pub(super) async fn queue_get(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    Ok(Json(queue_view(&c.zone_status(z)?)))
}

pub(super) async fn queue_cmd(c: &Ctx, z: Zoned, cmd: Command) -> ApiResult<QueueView> {
    let Json(status) = send(c, z, cmd).await?;
    Ok(Json(queue_view(&status)))
}

#[utoipa::path(
    post,
    path = "/api/v1/queue",
    summary = "Add a file, folder, .m3u or FIFO to the queue, at the end or at a position (the item playing stays playing)",
    params(ZoneQuery),
    request_body = chorus_api::AddBody,
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
        (status = 403, description = "the path lies outside the folders this controller plays from ([controller] media-roots)", body = chorus_api::ErrorBody),
        (status = 404, description = "nothing at that path; or no zone of that name", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn queue_add(
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

#[utoipa::path(
    delete,
    path = "/api/v1/queue/{position}",
    summary = "Remove an item (0-based); removing the item playing moves on to the next",
    params(("position" = i64, Path, description = "0-based"), ZoneQuery),
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
        (status = 422, description = "no item at that position", body = chorus_api::ErrorBody),
    )
)]
pub(super) async fn queue_remove(
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

#[utoipa::path(
    post,
    path = "/api/v1/queue/move",
    summary = "Move an item (the item playing stays playing)",
    params(ZoneQuery),
    request_body = chorus_api::MoveBody,
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
    )
)]
pub(super) async fn queue_move(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<MoveBody>, JsonRejection>,
) -> ApiResult<QueueView> {
    let b = body(b)?;
    let len = c.zone_status(z)?.queue.len();
    let (from, to) = (position(b.from, len, false)?, position(b.to, len, false)?);
    queue_cmd(&c, z, Command::Move { from, to }).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/queue",
    summary = "Clear the queue (and stop)",
    params(ZoneQuery),
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
    )
)]
pub(super) async fn queue_clear(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    queue_cmd(&c, z, Command::Clear).await
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/shuffle",
    summary = "Shuffle the queue; the item playing stays playing and becomes the first",
    params(ZoneQuery),
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
    )
)]
pub(super) async fn queue_shuffle(State(c): State<Arc<Ctx>>, z: Zoned) -> ApiResult<QueueView> {
    queue_cmd(&c, z, Command::Shuffle).await
}

#[utoipa::path(
    put,
    path = "/api/v1/repeat",
    summary = "Repeat mode: off, all (the queue), one (the item)",
    params(ZoneQuery),
    request_body = chorus_api::RepeatBody,
    responses(
        (status = 200, description = "the queue", body = chorus_api::QueueView),
    )
)]
pub(super) async fn repeat(
    State(c): State<Arc<Ctx>>,
    z: Zoned,
    b: Result<Json<RepeatBody>, JsonRejection>,
) -> ApiResult<QueueView> {
    let mode = body(b)?.mode;
    queue_cmd(&c, z, Command::SetRepeat(mode)).await
}
