//! Output backends behind one trait. Every backend reports its delay, so that the playout
//! thread can schedule each frame for its presentation time.

pub mod alsa;
pub mod headroom;
pub mod sim;

use crate::clock::{Frames, LocalNs, SharedClock};
use crate::config::{OutputKind, SpeakerConfig};
use crate::wire::SampleFormat;
pub use chorus_api::OutputInfo;

/// How far the device is behind the writer: `frames` written but not yet heard, as of local
/// time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub frames: i64,
    pub at: LocalNs,
}

/// Errors of output backends, with the device they concern.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("ALSA device {device}: {op}: {source}")]
    Alsa {
        device: String,
        op: &'static str,
        source: ::alsa::Error,
    },
    #[error("ALSA device {device}: {detail}")]
    AlsaConfig { device: String, detail: String },
    #[error("output file {path}: {source}")]
    File { path: String, source: hound::Error },
    #[error("output file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("simulated DAC {path}: underrun (xrun)")]
    SimulatedXrun { path: String },
}

/// An audio output.
///
/// Contract: `write` takes interleaved samples in [-1, 1) at the stream's rate and channel
/// count; it may block until the device has room. `delay` tells how many written frames are not
/// yet heard, stamped with the local clock; `None` when the device cannot tell (the caller then
/// paces itself). After an error, `recover` brings the device back to a writable state.
pub trait Output: Send {
    fn info(&self) -> OutputInfo;
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError>;
    fn delay(&mut self) -> Result<Option<Delay>, OutputError>;
    fn recover(&mut self) -> Result<(), OutputError>;
    /// Frames the device needs queued, by its delay, for its next bite to find them in its
    /// ring (see [`headroom`]); 0 when it takes a frame at a time.
    fn headroom(&self) -> Frames {
        Frames(0)
    }
    /// The playout thread sleeps this long before it looks at the device again (the sim's
    /// wake-ups come late here, as a loaded machine's do: before any clock is read).
    fn sleep(&mut self, d: std::time::Duration) {
        std::thread::sleep(d);
    }
    /// Flushes and closes (files get their final header).
    fn finish(&mut self) -> Result<(), OutputError>;
}

/// Opens the output the config asks for.
pub fn open(
    cfg: &SpeakerConfig,
    rate: u32,
    channels: u8,
    format: SampleFormat,
    clock: SharedClock,
) -> Result<Box<dyn Output>, OutputError> {
    let (period, buffer) = cfg.device_frames(rate);
    let (period_frames, buffer_frames) = (period as usize, buffer as usize);
    match cfg.output {
        OutputKind::Alsa => Ok(Box::new(alsa::AlsaOutput::open(
            &cfg.device,
            rate,
            channels,
            format,
            period_frames,
            buffer_frames,
            clock,
        )?)),
        OutputKind::File => Ok(Box::new(sim::SimDac::open(sim::SimParams {
            backend: "file",
            path: cfg.path.clone(),
            heard_log: None,
            rate,
            channels,
            format,
            ppm: 0.0,
            delay_step_frames: 0,
            stale_stamps: false,
            timestamp_noise_us: 0.0,
            wake_jitter_us: 0,
            xrun_every_frames: 0,
            period_frames,
            buffer_frames,
            clock,
        })?)),
        OutputKind::Sim => Ok(Box::new(sim::SimDac::open(sim::SimParams {
            backend: "sim",
            path: cfg.path.clone(),
            heard_log: (!cfg.heard_log.is_empty()).then(|| cfg.heard_log.clone()),
            rate,
            channels,
            format,
            ppm: cfg.dac_ppm,
            delay_step_frames: cfg.sim_delay_step_frames as u64,
            stale_stamps: cfg.sim_stale_stamps,
            timestamp_noise_us: cfg.sim_timestamp_noise_us,
            wake_jitter_us: cfg.sim_wake_jitter_us,
            xrun_every_frames: cfg.sim_xrun_every_ms as u64 * rate as u64 / 1000,
            period_frames,
            buffer_frames,
            clock,
        })?)),
    }
}
