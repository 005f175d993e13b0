//! chorus: multiroom audio. One daemon, `chorusd`, with two roles: a controller that decodes
//! sources and multicasts timestamped PCM, and speakers that follow the controller's clock and
//! play each frame at its presentation time. See docs/ARCHITECTURE.md for the map.

// What the tests, benches and fuzz targets do not use is pub(crate); this keeps it so.
#![warn(unreachable_pub)]

pub(crate) mod api;
pub mod audio;
pub mod clock;
pub mod config;
pub(crate) mod controller;
pub mod daemon;
pub(crate) mod discovery;
pub mod dsp;
pub mod fuzz;
pub mod net;
pub(crate) mod notify;
pub(crate) mod openapi;
pub mod speaker;
pub mod sync;
pub mod wire;
