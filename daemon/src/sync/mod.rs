//! Clock synchronisation: the speaker's model of the controller clock (pure logic), the
//! speaker's side of the exchange (`client`, with its poll policy), and the poll schedule both
//! sides agree on. The controller's side of the exchange is `controller::sync_service`.

pub mod client;
pub mod model;

pub use model::{ClockModel, ClockSnapshot, Exchange};

/// Speakers on a quiet path poll every 500 ms, on this grid of the controller's clock (each at
/// its own phase within `QUIET_POLL_SPREAD_NS` after a point), so that the controller's sync
/// service takes their requests in a burst. Twice a second is plenty where the delay floor is
/// sharp (sync-bench: the same skew as at four); what it saves is per speaker, on the
/// controller (its only cost that grows with the house) and on each speaker.
pub const QUIET_POLL_NS: i64 = 500_000_000;
/// The spread of the speakers' phases after each point of the grid.
pub const QUIET_POLL_SPREAD_NS: i64 = 2_000_000;
