//! Zones and the speakers a controller knows: what `/api/v1/zone`, `/zones`, `/queue` and
//! `/speakers` answer.

use crate::counters::ZoneCounts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happens at the end of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Repeat {
    /// Play the queue once.
    #[default]
    Off,
    /// Start the queue over after its last item.
    All,
    /// Play the current item again and again.
    One,
}

/// Transport state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransportState {
    Stopped,
    Playing,
    Paused,
}

impl TransportState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportState::Stopped => "stopped",
            TransportState::Playing => "playing",
            TransportState::Paused => "paused",
        }
    }
}

/// PCM sample encodings on the wire (always little-endian, interleaved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// Signed 16-bit.
    S16,
    /// Signed 24-bit, packed in 3 bytes.
    S24,
    /// Signed 32-bit.
    S32,
}

impl SampleFormat {
    /// Bytes per sample on the wire.
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S24 => 3,
            SampleFormat::S32 => 4,
        }
    }
    /// Significant bits.
    pub fn bits(self) -> u16 {
        match self {
            SampleFormat::S16 => 16,
            SampleFormat::S24 => 24,
            SampleFormat::S32 => 32,
        }
    }
}

/// How a zone's audio travels in its datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Raw PCM of the sample format: the least work for a speaker.
    #[default]
    Pcm,
    /// One FLAC frame per datagram (lossless, 16 or 24-bit): about half the bytes of PCM
    /// on music, for links that carry less (Wi-Fi).
    Flac,
}

/// How a zone's datagrams reach a speaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The zone's multicast group (one send reaches every speaker of a wired LAN).
    #[default]
    Multicast,
    /// Sent to the speaker's own address (on Wi-Fi: acknowledged and retried by the access
    /// point at the station's rate, where multicast goes at a basic rate, unacknowledged).
    Unicast,
}

/// A reported problem (undecodable file, failed seek, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorEvent {
    /// Controller clock, ms.
    pub at_ms: i64,
    pub item: String,
    pub message: String,
}

/// A zone: its transport, queue, now playing, volume and stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ZoneStatus {
    pub zone: String,
    pub state: TransportState,
    pub uri: Option<String>,
    pub queue: Vec<String>,
    /// The item playing or paused, 0-based.
    pub index: Option<usize>,
    pub repeat: Repeat,
    /// Zone volume 0..=100 and mute (applied to the stream: every speaker follows).
    pub volume: u8,
    pub muted: bool,
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
    /// Position heard by the speakers, seconds.
    pub position_s: f64,
    pub duration_s: Option<f64>,
    pub stream: StreamInfo,
    pub session: u32,
    /// What was sent (each a counter).
    #[serde(flatten)]
    pub counts: ZoneCounts,
    /// Last errors, oldest first.
    pub errors: Vec<ErrorEvent>,
}

/// The zone's stream format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    /// The multicast group.
    pub group: String,
    pub rate: u32,
    pub channels: u8,
    pub sample_format: SampleFormat,
    pub codec: Codec,
    pub latency_ms: u32,
    /// Frames read per datagram (a FLAC block that does not fit one datagram goes as two).
    pub frames_per_packet: usize,
}

/// A zone in the list of zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ZoneEntry {
    pub name: String,
    /// The zone's stream, `group:port`.
    pub stream: String,
    pub state: Option<TransportState>,
    pub title: Option<String>,
    pub volume: Option<u8>,
    pub muted: Option<bool>,
    /// Speakers playing this zone's stream.
    pub speakers: Vec<String>,
}

/// Every zone of a controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ZoneList {
    pub zones: Vec<ZoneEntry>,
}

/// A zone's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    pub items: Vec<String>,
    /// The item playing or paused, 0-based.
    pub index: Option<usize>,
    pub repeat: Repeat,
}

/// A speaker as its controller knows it (from its heartbeats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpeakerInfo {
    pub name: String,
    pub api_url: String,
    pub volume: u8,
    pub muted: bool,
    pub locked: bool,
    pub sync_error_us: Option<f64>,
    /// The zone whose stream it plays (None: a stream this controller does not send).
    pub zone: Option<String>,
    /// That stream, `group:port`, as the speaker reports it.
    pub stream: Option<String>,
    /// How the zone's datagrams reach it now (unicast: it asked, or the zone sends so, and
    /// it proved it receives the sync service's answers).
    pub delivery: Delivery,
    /// A heartbeat came in the last few seconds.
    pub online: bool,
    pub last_seen_ms_ago: i64,
}

/// A chorus daemon seen on the network (mDNS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Found {
    /// Instance name: the speaker's name, or `<zone> controller on <host>`.
    pub name: String,
    /// `controller`, `speaker` or `controller+speaker`.
    pub role: String,
    pub zone: String,
    pub api_url: String,
}

/// The speakers of a controller's zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpeakerList {
    pub speakers: Vec<SpeakerInfo>,
    /// Speakers of this zone that announce themselves (mDNS) but send no heartbeats here.
    pub discovered: Vec<Found>,
}
