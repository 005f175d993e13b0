//! Checks of request bodies both roles take (the controller forwards speaker calls); the bodies
//! themselves are `chorus_api`'s.

use super::ApiError;

/// Validates a volume from an API body.
pub(crate) fn check_volume(v: i64) -> Result<u8, ApiError> {
    u8::try_from(v)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| ApiError::unprocessable(format!("volume {v} is outside 0..=100")))
}
