//! A speaker's status: `GET /api/v1/speaker` on a speaker, and the answer to every call that
//! changes it.

use crate::counters::{NetworkStatus, PlayoutCounts};
use crate::zone::Delivery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A speaker: where it plays, how well it is in sync, and what its device and the stream do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpeakerStatus {
    pub name: String,
    pub zone: String,
    /// The zone's stream, `group:port`.
    pub stream: String,
    /// A move to another zone is under way (the old stream plays until the new one is due).
    pub switching: bool,
    /// The controller's sync service, `host:port`, once known.
    pub controller: Option<String>,
    /// How the stream came in last: `unicast` (to the speaker's own address) or `multicast`.
    pub delivery: Delivery,
    /// 0..=100.
    pub volume: u8,
    pub muted: bool,
    /// The clock is disciplined to the controller's.
    pub locked: bool,
    pub clock: Option<ClockStatus>,
    pub output: Option<OutputInfo>,
    /// Why there is no output (device missing or lost; retried every 2 s), if so.
    pub output_problem: Option<String>,
    /// Times the output was opened (more than one: it was lost and came back).
    pub output_opens: u64,
    pub latency: LatencyStatus,
    pub playout: PlayoutStatus,
    pub network: NetworkStatus,
}

/// The clock model against the controller's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClockStatus {
    /// controller - local, ns, at the model's reference point.
    pub offset_ns: i64,
    pub freq_ppm: f64,
    pub rtt_us: f64,
    pub min_rtt_us: f64,
    /// Estimated offset error, µs: the statistical error of the delay-envelope fit once enough
    /// exchanges are in (assumes the path's minimum delay is the same both ways), half the best
    /// round trip before that.
    pub est_error_us: f64,
    /// Clock steps detected (the model dropped its history and re-learned).
    pub steps: u64,
}

/// What delays the sound on this speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyStatus {
    /// The output's buffer, ms (None: no output).
    pub device_buffer_ms: Option<f64>,
    /// Extra latency set for this speaker (`PUT /api/v1/speaker/latency`), ms.
    pub extra_ms: f64,
}

/// What the playout does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlayoutStatus {
    pub playing: bool,
    /// The last measured timing error, µs.
    pub sync_error_us: Option<f64>,
    pub buffered_ms: f64,
    /// What was played, lost, late, corrected (each a counter).
    #[serde(flatten)]
    pub counts: PlayoutCounts,
    /// Whether the resampler is correcting drift.
    pub resampling: bool,
    /// Resampling correction, ppm (stream frames per DAC frame minus one).
    pub ratio_ppm: f64,
    /// The device's pointer step, how it stamps its status and its rate, as the playout thread
    /// found them (null before the first reading).
    pub device: Option<DeviceStatus>,
}

/// How a device stamps its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stamps {
    /// When it is read (ALSA plugins, most drivers): stale by up to a pointer step.
    AtCall,
    /// When the position moved (hardware-pointer or audio timestamps): exact.
    AtPointerUpdate,
}

/// What the speaker has found out about its device's clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceStatus {
    /// Frames the position moves by at a time (1: exact).
    pub pointer_step_frames: u64,
    pub stamps: Stamps,
    /// The DAC's rate against this box's clock, ppm (positive: fast).
    pub rate_ppm: f64,
    /// Width of the bracket around the DAC's position, µs (how well it is known).
    pub uncertainty_us: f64,
    /// Times the model started over (device restarted or stalled).
    pub restarts: u64,
    /// How much the moments the position moves vary (µs, one deviation of the lower half), when
    /// they do (a plugin's callback): then the line under them is the estimate. None while the
    /// edges are sharp or not known yet.
    pub edge_jitter_us: Option<f64>,
    /// A position the DAC passed (frames since the device started) and when, by the model
    /// (this box's clock, ns): a point of the line the speaker plays by, for measurement.
    pub position: i64,
    pub position_at_ns: i64,
}

/// What an output is, as opened (granted values, not requested ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutputInfo {
    /// `alsa`, `sim` or `file`.
    pub backend: String,
    pub device: String,
    pub rate: u32,
    pub channels: u8,
    /// `s16`, `s32`, ... as the device took it.
    pub sample_format: String,
    pub period_frames: usize,
    pub buffer_frames: usize,
}
