//! The event stream's events (`GET /api/v1/events`, Server-Sent Events): the SSE `event:` name
//! is [`Event::kind`], the `data:` the variant's fields as a JSON object.
//!
//! - `transport` `{"zone", "state"}`: playing, paused, stopped
//! - `track` `{"zone", "index", "title", "uri", "duration_s"}`: now playing changed
//! - `volume` `{"speaker", "volume", "muted"}` or `{"zone", "volume", "muted"}`
//! - `speaker` `{"speaker", "event"}`: joined, left (no heartbeat for a while), locked,
//!   lost_sync; moved (with `"zone"`: it now plays that zone)
//! - `error` `{"zone", "item", "message", "at_ms"}`: an item that could not be played

use crate::zone::TransportState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event. Untagged: a reader tells them apart by their fields (the variants are in the
/// order that makes that unambiguous: each is tried before those whose fields it has) or by
/// the SSE name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Event {
    /// An item of a zone's queue could not be played (`at_ms`: controller clock).
    Error {
        zone: String,
        item: String,
        message: String,
        at_ms: i64,
    },
    /// A speaker joined, left, locked, lost sync or moved (then `zone` is where it plays).
    Speaker {
        speaker: String,
        event: SpeakerChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone: Option<String>,
    },
    /// A speaker's volume or mute changed.
    SpeakerVolume {
        speaker: String,
        volume: u8,
        muted: bool,
    },
    /// A zone's volume or mute changed.
    ZoneVolume {
        zone: String,
        volume: u8,
        muted: bool,
    },
    /// A zone's transport state changed.
    Transport { zone: String, state: TransportState },
    /// A zone's now-playing item changed.
    Track {
        zone: String,
        index: Option<usize>,
        title: Option<String>,
        uri: Option<String>,
        duration_s: Option<f64>,
    },
}

/// What happened to a speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpeakerChange {
    Joined,
    Left,
    Locked,
    LostSync,
    Moved,
}

impl Event {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Transport { .. } => "transport",
            Event::Track { .. } => "track",
            Event::ZoneVolume { .. } | Event::SpeakerVolume { .. } => "volume",
            Event::Speaker { .. } => "speaker",
            Event::Error { .. } => "error",
        }
    }

    /// A speaker's change without a zone.
    pub fn speaker(speaker: &str, event: SpeakerChange) -> Self {
        Event::Speaker {
            speaker: speaker.to_string(),
            event,
            zone: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_as_itself() {
        let zone = || "den".to_string();
        for ev in [
            Event::Error {
                zone: zone(),
                item: "a.flac".into(),
                message: "bad".into(),
                at_ms: 5,
            },
            Event::speaker("kitchen", SpeakerChange::LostSync),
            Event::Speaker {
                speaker: "kitchen".into(),
                event: SpeakerChange::Moved,
                zone: Some(zone()),
            },
            Event::SpeakerVolume {
                speaker: "kitchen".into(),
                volume: 3,
                muted: true,
            },
            Event::ZoneVolume {
                zone: zone(),
                volume: 40,
                muted: false,
            },
            Event::Transport {
                zone: zone(),
                state: TransportState::Paused,
            },
            Event::Track {
                zone: zone(),
                index: Some(1),
                title: None,
                uri: Some("x.wav".into()),
                duration_s: Some(2.5),
            },
        ] {
            let text = serde_json::to_string(&ev).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev, "{text}");
        }
    }
}
