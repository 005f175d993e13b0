//! `GET /api/v1/status`: whichever roles run here.

use crate::counters::SyncServiceStatus;
use crate::speaker::SpeakerStatus;
use crate::zone::{SpeakerInfo, ZoneStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The daemon: its roles, each role's status, and its clocks read together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub version: String,
    /// `controller`, `speaker`, or both.
    pub roles: Vec<String>,
    pub controller: Option<ControllerStatus>,
    pub speaker: Option<SpeakerStatus>,
    pub timing: Timing,
}

/// A controller: the zone asked for (`?zone=`, else the first), its zones and speakers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControllerStatus {
    pub zone: Option<ZoneStatus>,
    /// Every zone's name.
    pub zones: Vec<String>,
    pub speakers: Vec<SpeakerInfo>,
    /// The controller's clock (the one every speaker follows), ns.
    pub clock_ns: i64,
    pub sync_service: SyncServiceStatus,
}

/// For measurement across hosts or namespaces that share a realtime clock: this process's
/// clock and (on a speaker) its estimate of the controller's, read together with realtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timing {
    pub realtime_ns: i64,
    pub clock_ns: i64,
    pub controller_estimate_ns: Option<i64>,
}
