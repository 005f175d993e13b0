//! Request bodies both roles take (the controller forwards speaker calls), and their checks.

use super::ApiError;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeBody {
    pub volume: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    pub muted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyBody {
    pub extra_latency_ms: f64,
}

/// Validates a volume from an API body.
pub fn check_volume(v: i64) -> Result<u8, ApiError> {
    u8::try_from(v)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| ApiError::unprocessable(format!("volume {v} is outside 0..=100")))
}
