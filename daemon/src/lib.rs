//! chorus: multiroom audio. One daemon, `chorusd`, with two roles: a controller that decodes
//! sources and multicasts timestamped PCM, and speakers that follow the controller's clock and
//! play each frame at its presentation time. See docs/ARCHITECTURE.md for the map.

pub mod api;
pub mod audio;
pub mod clock;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod discovery;
pub mod dsp;
pub mod fuzz;
pub mod net;
pub mod notify;
pub mod openapi;
pub mod speaker;
pub mod sync;
pub mod wire;
