//! A simulated DAC: consumes frames in real time at its own rate error, reports its delay like
//! ALSA does, records everything it plays to a WAV file and, for measurement, logs on a clock
//! common to every process on the host (`CLOCK_REALTIME`) when it started playing which frame.
//! The `file` output is this DAC at zero rate error without the log.
//!
//! Heard-log format, one line per (re)start of the DAC:
//! `start dac_frame=<n> realtime_ns=<t> rate_hz=<r>`: DAC frame `n` (0 = first frame in the WAV)
//! was heard at `t`, and later frames follow at `r` frames per second until the next line.

use super::{Delay, Output, OutputError, OutputInfo};
use crate::clock::{monotonic_raw_ns, realtime_ns_for_measurement, SharedClock};
use crate::wire::SampleFormat;
use std::fs::File;
use std::io::{BufWriter, Write};

/// Parameters of a simulated DAC.
pub struct SimParams {
    pub backend: &'static str,
    pub path: String,
    pub heard_log: Option<String>,
    pub rate: u32,
    pub channels: u8,
    pub format: SampleFormat,
    pub ppm: f64,
    /// Report the position in steps of this many frames (0: exact), stamped when it moved
    /// (like ALSA's hardware-pointer timestamps).
    pub delay_step_frames: u64,
    /// With steps: stamp at the call instead (no hardware timestamps): stale by up to a step.
    pub stale_stamps: bool,
    /// Uniform noise added to delay timestamps, ± µs.
    pub timestamp_noise_us: f64,
    /// The playout thread's wake-ups come this much late at most, µs (uniform).
    pub wake_jitter_us: u32,
    /// Fail like an xrun every this many frames written (0: never).
    pub xrun_every_frames: u64,
    pub period_frames: usize,
    pub buffer_frames: usize,
    pub clock: SharedClock,
}

/// The simulated DAC.
pub struct SimDac {
    p: SimParams,
    wav: Option<hound::WavWriter<BufWriter<File>>>,
    log: Option<BufWriter<File>>,
    /// Host raw-clock time and DAC frame at which the DAC last (re)started.
    start: Option<(i64, u64)>,
    written: u64,
    since_flush: u64,
    underruns: u64,
    /// Frames written at which the next simulated xrun happens.
    next_xrun: u64,
    /// The DAC is stopped by an xrun until `recover`.
    xrun: bool,
}

impl SimDac {
    pub fn open(p: SimParams) -> Result<SimDac, OutputError> {
        let spec = hound::WavSpec {
            channels: p.channels as u16,
            sample_rate: p.rate,
            bits_per_sample: if p.format == SampleFormat::S16 {
                16
            } else {
                32
            },
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::create(&p.path, spec).map_err(|source| OutputError::File {
            path: p.path.clone(),
            source,
        })?;
        let log = match &p.heard_log {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|source| {
                OutputError::Io {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        Ok(SimDac {
            p,
            wav: Some(wav),
            log,
            start: None,
            written: 0,
            since_flush: 0,
            underruns: 0,
            next_xrun: 0,
            xrun: false,
        })
        .map(|mut d| {
            d.next_xrun = d.p.xrun_every_frames;
            d
        })
    }

    fn dac_rate(&self) -> f64 {
        self.p.rate as f64 * (1.0 + self.p.ppm * 1e-6)
    }

    /// Frames the DAC has played by host raw time `raw`.
    fn consumed(&self, raw: i64) -> u64 {
        match self.start {
            None => self.written,
            Some((t, f)) => {
                let played = ((raw - t).max(0) as f64 * self.dac_rate() * 1e-9) as u64;
                (f + played).min(self.written)
            }
        }
    }
}

/// The realtime instant of raw-clock time `raw` (in the past): both clocks read back to back,
/// keeping the tightest of a few tries, so that a preemption between the reads (the playout
/// thread shares the machine with everything else in a benchmark) cannot shift the log.
fn realtime_at(raw: i64) -> i64 {
    let mut best: Option<(i64, i64)> = None; // (read span, realtime at raw)
    for _ in 0..5 {
        let a = monotonic_raw_ns();
        let rt = realtime_ns_for_measurement();
        let b = monotonic_raw_ns();
        let at = rt - ((a + b) / 2 - raw);
        if best.is_none_or(|(span, _)| b - a < span) {
            best = Some((b - a, at));
        }
    }
    best.map(|(_, at)| at).unwrap_or(0)
}

impl Output for SimDac {
    fn info(&self) -> OutputInfo {
        OutputInfo {
            backend: self.p.backend.into(),
            device: self.p.path.clone(),
            rate: self.p.rate,
            channels: self.p.channels,
            sample_format: format!("{:?}", self.p.format).to_lowercase(),
            period_frames: self.p.period_frames,
            buffer_frames: self.p.buffer_frames,
        }
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        let raw = monotonic_raw_ns();
        if self.p.xrun_every_frames > 0 && self.written >= self.next_xrun {
            // An xrun: playback stops where it is; what was queued is never heard (the WAV
            // keeps it, the heard log's next start line says where the DAC resumed).
            self.next_xrun = self.written + self.p.xrun_every_frames;
            self.xrun = true;
            self.start = None;
        }
        if self.xrun {
            return Err(OutputError::SimulatedXrun {
                path: self.p.path.clone(),
            });
        }
        if self.start.is_some() && self.consumed(raw) >= self.written {
            self.underruns += 1;
            self.start = None;
        }
        if self.start.is_none() {
            self.start = Some((raw, self.written));
            let dac_rate = self.dac_rate();
            if let Some(log) = &mut self.log {
                let _ = writeln!(
                    log,
                    "start dac_frame={} realtime_ns={} rate_hz={:.6}",
                    self.written,
                    // the realtime instant of `raw`, when the DAC started
                    realtime_at(raw),
                    dac_rate
                );
                let _ = log.flush();
            }
        }
        let path = &self.p.path;
        if let Some(wav) = &mut self.wav {
            let err = |source| OutputError::File {
                path: path.clone(),
                source,
            };
            if self.p.format == SampleFormat::S16 {
                for s in samples {
                    wav.write_sample((*s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
                        .map_err(err)?;
                }
            } else {
                for s in samples {
                    let v = (*s as f64 * 2_147_483_648.0)
                        .round()
                        .clamp(-2_147_483_648.0, 2_147_483_647.0);
                    wav.write_sample(v as i32).map_err(err)?;
                }
            }
            let frames = (samples.len() / self.p.channels as usize) as u64;
            self.written += frames;
            self.since_flush += frames;
            if self.since_flush >= self.p.rate as u64 {
                self.since_flush = 0;
                wav.flush().map_err(err)?;
            }
        }
        Ok(())
    }

    fn delay(&mut self) -> Result<Option<Delay>, OutputError> {
        let raw = monotonic_raw_ns();
        let now = self.p.clock.now();
        // Exact mode is like ALSA's audio timestamp: a whole number of frames, stamped with the
        // moment the DAC started its current frame. Step mode is like drivers whose pointer moves
        // once a period: stamped when it moved (ALSA's status timestamp) or, with stale stamps,
        // read with a clock at the call: stale by up to a step.
        let step = self.p.delay_step_frames;
        let (queued, since_tick_ns) = match self.start {
            Some((t, f)) => {
                let played = (raw - t).max(0) as f64 * self.dac_rate() * 1e-9;
                let whole = if step > 1 {
                    (played / step as f64).floor() * step as f64
                } else {
                    played.floor()
                };
                if f + whole as u64 >= self.written {
                    (0, 0)
                } else {
                    let frac_ns = if step > 1 && self.p.stale_stamps {
                        0
                    } else {
                        ((played - whole) * 1e9 / self.dac_rate()) as i64
                    };
                    ((self.written - f - whole as u64) as i64, frac_ns)
                }
            }
            // Not started (nothing written yet), or stopped by an xrun (what was queued is gone).
            None => (0, 0),
        };
        let noise = if self.p.timestamp_noise_us > 0.0 {
            ((rand::random::<f64>() * 2.0 - 1.0) * self.p.timestamp_noise_us * 1000.0) as i64
        } else {
            0
        };
        Ok(Some(Delay {
            frames: queued,
            at: now.plus(noise - since_tick_ns),
        }))
    }

    fn sleep(&mut self, d: std::time::Duration) {
        // A wake-up late by a random 0..J µs: the thread got the CPU late (its clock reads
        // are late with it; a preemption inside the status call is another matter).
        let late = rand::random::<f64>() * self.p.wake_jitter_us as f64;
        std::thread::sleep(d + std::time::Duration::from_nanos((late * 1e3) as u64));
    }

    fn recover(&mut self) -> Result<(), OutputError> {
        self.xrun = false;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        if let Some(wav) = self.wav.take() {
            wav.finalize().map_err(|source| OutputError::File {
                path: self.p.path.clone(),
                source,
            })?;
        }
        if let Some(log) = &mut self.log {
            let _ = writeln!(
                log,
                "end dac_frame={} underruns={}",
                self.written, self.underruns
            );
            let _ = log.flush();
        }
        Ok(())
    }
}
