//! The HTTP API's types: every request body and every answer of `/api/v1`, in one place. The
//! daemon serializes them, `chorusctl` deserializes them, and the OpenAPI document's schemas are
//! derived from them (`utoipa::ToSchema`), so a field is written down once and a renamed one
//! fails to compile rather than silently reading as absent.
//!
//! No I/O and no daemon logic here: plain data, its serde names, and the counters tables (whose
//! rows are fields of the status).
#![forbid(unsafe_code)]

pub mod bodies;
pub mod counters;
pub mod error;
pub mod events;
pub mod speaker;
pub mod status;
pub mod zone;

pub use bodies::*;
pub use counters::{NetworkCounters, NetworkStatus, PlayoutCounters, PlayoutCounts};
pub use counters::{SyncServiceCounters, SyncServiceStatus, ZoneCounters, ZoneCounts};
pub use error::{ErrorBody, ErrorDetail};
pub use events::{Event, SpeakerChange};
pub use speaker::*;
pub use status::*;
pub use zone::*;
