//! The controller role: turns a queue of files into the zone's timestamped multicast stream,
//! answers clock-sync requests and keeps track of the speakers that announce themselves.

pub mod api;
pub mod events;
pub mod metrics;
mod prefetch;
pub mod proof;
pub mod queue;
pub mod registry;
pub mod streamer;
pub mod sync_service;
pub mod transport;

pub use registry::Registry;
pub use streamer::{Command, StreamerHandle, ZoneStatus};
