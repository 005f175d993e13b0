//! Request bodies. Each refuses fields it does not know (a misspelt field is an error, not a
//! silent default).

use crate::zone::Repeat;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT .../volume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeBody {
    /// 0..=100 (checked by the handler: out of range is 422, not 400).
    #[schema(minimum = 0, maximum = 100)]
    pub volume: i64,
}

/// `PUT .../mute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    pub muted: bool,
}

/// `PUT /api/v1/speaker/latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyBody {
    /// Added to the zone's latency on this speaker only, ms (0..=500).
    #[schema(minimum = 0, maximum = 500)]
    pub extra_latency_ms: f64,
}

/// `PUT /api/v1/speaker/zone` (sent by the controller: it knows where each zone is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneBody {
    pub zone: String,
    /// The zone's multicast group.
    pub group: String,
    pub port: u16,
}

/// `PUT /api/v1/speakers/{name}/zone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeakerZoneBody {
    /// The zone to move to, by name.
    pub zone: String,
}

/// `POST /api/v1/play`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayBody {
    /// A file or folder under a media root, an `http(s)://` stream, `fifo:` or `alsa:`.
    pub uri: String,
}

/// `POST /api/v1/seek`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekBody {
    /// Seconds from the item's start.
    pub position_s: f64,
}

/// `POST /api/v1/queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    pub uri: String,
    /// 0-based position to insert at; absent: at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// `POST /api/v1/queue/move`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// 0-based positions.
    pub from: i64,
    pub to: i64,
}

/// `PUT /api/v1/repeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatBody {
    pub mode: Repeat,
}
