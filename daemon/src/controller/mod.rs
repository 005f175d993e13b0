//! The controller role: turns a queue of files into the zone's timestamped multicast stream,
//! answers clock-sync requests and keeps track of the speakers that announce themselves.

pub(crate) mod api;
pub(crate) mod events;
mod fanout;
pub(crate) mod metrics;
mod prefetch;
pub(crate) mod proof;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod streamer;
pub(crate) mod sync_service;
pub(crate) mod transport;
pub(crate) mod unicast;

pub(crate) use registry::Registry;
pub(crate) use streamer::StreamerHandle;
