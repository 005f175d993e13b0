//! ALSA capture (line-in) as a source: `alsa:DEVICE` in the queue (e.g. `alsa:hw:CARD=USB,DEV=0`).
//!
//! A thread reads the device into a ring; the streamer takes frames from it at the stream's
//! pace. The capture card has its own crystal, so the ring slowly fills or drains: a slow
//! controller on its level trims a fractional resampler, within ±1000 ppm. Inside a band of
//! ±`BAND` around the target level the ratio is exactly one and frames pass bit-exact; past
//! it the correction grows with the excess, so the level settles just outside the band at the
//! rate that matches the card. A device that delivers faster than real time (ALSA's `null`,
//! a file) is paced by the level: the reader waits while the ring is well above the target.

use super::pipe::PipeFormat;
use super::AudioError;
use crate::dsp::resampler::FracResampler;
use crate::wire::Pcm;
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The prefix of a capture item.
pub const SCHEME: &str = "alsa:";

/// True if `uri` is a capture item (`alsa:...`), well-formed or not.
pub fn is_capture(uri: &str) -> bool {
    uri.starts_with(SCHEME)
}

/// The ALSA device a capture item names, if it names one plausibly (not empty, at most 256
/// bytes, no blanks or control characters).
pub fn device(uri: &str) -> Option<&str> {
    uri.strip_prefix(SCHEME).filter(|d| {
        !d.is_empty() && d.len() <= 256 && !d.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Frames per device read.
const PERIOD: usize = 480;
/// Level the ring is held at (the line-in's added latency), ms.
const TARGET_MS: f64 = 40.0;
/// No correction while the level is within this of the target, ms.
const BAND_MS: f64 = 30.0;
/// Correction per ms beyond the band, ppm.
const PPM_PER_MS: f64 = 20.0;
const MAX_PPM: f64 = 1000.0;
/// The reader waits while the ring holds more than the target plus this, ms (with the period
/// it then reads, still inside the band).
const PACE_MS: f64 = 10.0;
/// The ring never holds more than this, ms (older frames are dropped and counted).
const RING_MS: usize = 1000;

struct Shared {
    /// Interleaved samples read and not yet taken.
    ring: Mutex<VecDeque<f32>>,
    stop: AtomicBool,
    /// Frames dropped because the ring was full, and frames of silence given because it was
    /// empty.
    dropped: AtomicU64,
    starved: AtomicU64,
}

/// An open capture device.
pub struct CaptureReader {
    device: String,
    pub fmt: PipeFormat,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    rs: FracResampler,
    input: Vec<f32>,
    /// Input frames per output frame.
    step: f64,
    /// The ring has reached the target since it was last empty (until then: silence, so
    /// that the stream starts, and starts again after a stall, with a full margin).
    primed: bool,
}

impl CaptureReader {
    /// Opens `uri` (`alsa:DEVICE`) for capture in `fmt`. Fails at once, with the device's
    /// reason, if it cannot be opened in that format; later trouble (unplugged) gives silence
    /// while the device is reopened.
    pub fn open(uri: &str, fmt: PipeFormat) -> Result<CaptureReader, AudioError> {
        let path = PathBuf::from(uri);
        let Some(device) = device(uri).map(str::to_string) else {
            return Err(AudioError::Open {
                path,
                source: std::io::Error::other("no ALSA device named after alsa:"),
            });
        };
        let pcm = open_pcm(&device, fmt).map_err(|e| AudioError::Open {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let ch = fmt.channels as usize;
        let shared = Arc::new(Shared {
            ring: Mutex::new(VecDeque::with_capacity(
                fmt.rate as usize * RING_MS / 1000 * ch,
            )),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            starved: AtomicU64::new(0),
        });
        let thread = {
            let (shared, device) = (shared.clone(), device.clone());
            std::thread::Builder::new()
                .name("chorus-capture".into())
                .spawn(move || capture(pcm, &device, fmt, &shared))
                .map_err(|source| AudioError::Open { path, source })?
        };
        log::info!("capturing from ALSA device {device} ({fmt:?})");
        let mut rs = FracResampler::new(ch, 4 * PERIOD + 64);
        rs.reset(0.0);
        Ok(CaptureReader {
            device,
            fmt,
            shared,
            thread: Some(thread),
            rs,
            input: Vec::with_capacity(4 * PERIOD * ch),
            step: 1.0,
            primed: false,
        })
    }

    /// A name for the status: the device.
    pub fn title(&self) -> String {
        format!("line-in ({})", self.device)
    }

    /// Appends one period of frames (at the device's nominal rate, trimmed to the stream's
    /// pace) as interleaved floats; silence while the device has nothing. Never 0 frames.
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let ch = self.fmt.channels as usize;
        let rate = self.fmt.rate as f64;
        let need = self.rs.input_needed(PERIOD, self.step);
        self.input.clear();
        let start = out.len();
        out.resize(start + PERIOD * ch, 0.0);
        if let Ok(mut r) = self.shared.ring.lock() {
            let held_ms = r.len() as f64 / ch as f64 * 1000.0 / rate;
            self.primed |= held_ms >= TARGET_MS;
            if !self.primed {
                return Ok(PERIOD);
            }
            self.step = step_for(held_ms);
            let take = (need * ch).min(r.len());
            self.input.extend(r.drain(..take));
        }
        if self.input.len() < need * ch {
            self.primed = false;
            // Empty (the device stalled or is being reopened): silence, counted.
            let missing = need - self.input.len() / ch;
            self.shared
                .starved
                .fetch_add(missing as u64, Ordering::Relaxed);
            self.input.resize(need * ch, 0.0);
        }
        self.rs.push(&self.input);
        self.rs.process(self.step, &mut out[start..]);
        Ok(PERIOD)
    }
}

impl Drop for CaptureReader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (d, s) = (
            self.shared.dropped.load(Ordering::Relaxed),
            self.shared.starved.load(Ordering::Relaxed),
        );
        if d > 0 || s > 0 {
            log::info!(
                "capture from {} ended: {d} frames dropped (ring full), {s} of silence (ring empty)",
                self.device
            );
        }
    }
}

/// Input frames per output frame for a ring holding `held_ms`.
fn step_for(held_ms: f64) -> f64 {
    let off = held_ms - TARGET_MS;
    let beyond = off.abs() - BAND_MS;
    if beyond <= 0.0 {
        return 1.0;
    }
    // Too full: read faster; too empty: slower.
    let ppm = (beyond * PPM_PER_MS).min(MAX_PPM) * off.signum();
    1.0 + ppm * 1e-6
}

fn alsa_format(f: crate::wire::SampleFormat) -> Format {
    match f {
        crate::wire::SampleFormat::S16 => Format::s16(),
        crate::wire::SampleFormat::S24 => Format::S243LE,
        crate::wire::SampleFormat::S32 => Format::s32(),
    }
}

/// Why a capture device could not be opened as asked.
#[derive(Debug, thiserror::Error)]
enum CaptureError {
    #[error("{0}: {1}")]
    Alsa(&'static str, alsa::Error),
    #[error("the device captures at {got} Hz, not {want} Hz (set [controller] capture-format)")]
    Rate { got: u32, want: u32 },
}

fn open_pcm(device: &str, fmt: PipeFormat) -> Result<PCM, CaptureError> {
    let e = |what: &'static str| move |err: alsa::Error| CaptureError::Alsa(what, err);
    // Non-blocking, waited on with a timeout: a device that stalls never holds up a stop.
    let pcm = PCM::new(device, Direction::Capture, true).map_err(e("open"))?;
    {
        let hwp = HwParams::any(&pcm).map_err(e("hw_params_any"))?;
        hwp.set_access(Access::RWInterleaved)
            .map_err(e("set_access"))?;
        hwp.set_channels(fmt.channels as u32)
            .map_err(e("channels"))?;
        hwp.set_rate(fmt.rate, ValueOr::Nearest)
            .map_err(e("rate"))?;
        hwp.set_format(alsa_format(fmt.format))
            .map_err(e("sample format"))?;
        hwp.set_period_size_near(PERIOD as alsa::pcm::Frames, ValueOr::Nearest)
            .map_err(e("period"))?;
        hwp.set_buffer_size_near(8 * PERIOD as alsa::pcm::Frames)
            .map_err(e("buffer"))?;
        pcm.hw_params(&hwp).map_err(e("hw_params"))?;
        let got = hwp.get_rate().map_err(e("rate"))?;
        if got != fmt.rate {
            return Err(CaptureError::Rate {
                got,
                want: fmt.rate,
            });
        }
    }
    pcm.start().or_else(|_| pcm.prepare()).map_err(e("start"))?;
    Ok(pcm)
}

/// The capture thread: reads periods into the ring until stopped; reopens a device that fails.
fn capture(mut pcm: PCM, device: &str, fmt: PipeFormat, shared: &Shared) {
    let ch = fmt.channels as usize;
    let frame_bytes = fmt.format.bytes() * ch;
    let mut bytes = vec![0u8; PERIOD * frame_bytes];
    let mut samples: Vec<f32> = Vec::with_capacity(PERIOD * ch);
    let max = fmt.rate as usize * RING_MS / 1000 * ch;
    let pace = ((TARGET_MS + PACE_MS) * fmt.rate as f64 / 1000.0) as usize * ch;
    while !shared.stop.load(Ordering::Relaxed) {
        // Well ahead of the stream (a device faster than real time): wait for it to catch up.
        let held = shared.ring.lock().map(|r| r.len()).unwrap_or(0);
        if held > pace {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        match pcm.wait(Some(100)) {
            Ok(true) => {}
            // Nothing within 100 ms: look at the stop flag again.
            Ok(false) => continue,
            Err(err) => {
                if pcm.try_recover(err, true).is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        }
        let got = {
            let io = pcm.io_bytes();
            io.readi(&mut bytes)
        };
        match got {
            Err(err) if err.errno() == libc::EAGAIN => continue,
            Ok(frames) => {
                samples.clear();
                fmt.format
                    .decode(&bytes[..frames * frame_bytes], &mut samples);
                if let Ok(mut r) = shared.ring.lock() {
                    r.extend(samples.iter().copied());
                    if r.len() > max {
                        let over = r.len() - max;
                        let over = (over.div_ceil(ch) * ch).min(r.len());
                        r.drain(..over);
                        shared
                            .dropped
                            .fetch_add((over / ch) as u64, Ordering::Relaxed);
                    }
                }
            }
            Err(err) => {
                // An overrun (we were late) recovers in place; anything else reopens.
                if pcm.try_recover(err, true).is_ok() {
                    continue;
                }
                log::warn!("capture from {device} failed ({err}); reopening it every 2 s");
                loop {
                    for _ in 0..20 {
                        std::thread::sleep(Duration::from_millis(100));
                        if shared.stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    if let Ok(p) = open_pcm(device, fmt) {
                        log::info!("capture from {device} reopened");
                        pcm = p;
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_one_inside_the_band_and_grows_past_it() {
        assert_eq!(step_for(TARGET_MS), 1.0);
        assert_eq!(step_for(TARGET_MS + BAND_MS - 0.1), 1.0);
        assert_eq!(step_for(TARGET_MS - BAND_MS + 0.1), 1.0);
        let fast = step_for(TARGET_MS + BAND_MS + 5.0);
        assert!((fast - 1.0 - 100e-6).abs() < 1e-9, "{fast}");
        let slow = step_for((TARGET_MS - BAND_MS - 5.0).max(0.0));
        assert!(slow < 1.0, "{slow}");
        assert_eq!(step_for(10_000.0), 1.0 + MAX_PPM * 1e-6);
    }

    /// In simulated time: a card 300 ppm fast fills the ring; the controller settles just past
    /// the band at the card's rate, and the level stops growing (no drops, no starving).
    #[test]
    fn a_fast_card_is_absorbed_without_drops() {
        let rate = 48_000.0;
        let card_ppm = 300.0;
        let mut held = TARGET_MS * rate / 1000.0; // frames
        let mut produced_frac = 0.0;
        let mut steps = vec![];
        // 20 minutes of 10 ms periods.
        for _ in 0..120_000 {
            produced_frac += PERIOD as f64 * (1.0 + card_ppm * 1e-6);
            let whole = produced_frac.floor();
            produced_frac -= whole;
            held += whole;
            let step = step_for(held * 1000.0 / rate);
            held -= PERIOD as f64 * step;
            assert!(held > 0.0 && held < RING_MS as f64 * rate / 1000.0);
            steps.push(step);
        }
        let last = steps[steps.len() - 1];
        let ms = held * 1000.0 / rate;
        println!(
            "settled at {ms:.1} ms, ratio {:+.1} ppm",
            (last - 1.0) * 1e6
        );
        assert!((last - 1.0 - card_ppm * 1e-6).abs() < 20e-6, "{last}");
        assert!(ms < TARGET_MS + BAND_MS + 20.0, "{ms}");
    }

    #[test]
    fn bad_devices_are_refused_with_the_reason() {
        for uri in ["alsa:", "alsa:no_such_device_anywhere", "alsa:\u{1}x"] {
            let e = CaptureReader::open(uri, PipeFormat::default())
                .err()
                .expect(uri)
                .to_string();
            assert!(e.contains("cannot open"), "{uri}: {e}");
        }
    }
}
