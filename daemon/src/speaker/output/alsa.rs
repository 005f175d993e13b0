//! The real output: an ALSA PCM through alsa-lib. Asks for a period and buffer size, reads back
//! what the device granted, and reports the delay of every write.

use super::{Delay, Output, OutputError, OutputInfo};
use crate::clock::SharedClock;
use crate::wire::SampleFormat;
use alsa::pcm::{Access, Format, HwParams, State, TstampType, PCM};
use alsa::{Direction, ValueOr};

/// An open ALSA playback device.
pub struct AlsaOutput {
    pcm: PCM,
    device: String,
    rate: u32,
    channels: u8,
    s16: bool,
    period: usize,
    buffer: usize,
    clock: SharedClock,
    buf16: Vec<i16>,
    buf32: Vec<i32>,
    written: u64,
    zero_delays: u32,
    unpaced: bool,
    /// The device stamps its status on CLOCK_MONOTONIC_RAW.
    tstamps: bool,
}

// SAFETY: alsa-lib PCM handles may be used from any one thread at a time; AlsaOutput is owned
// by exactly one playout thread and never shared.
unsafe impl Send for AlsaOutput {}

impl AlsaOutput {
    /// Opens `device` for playback at exactly `rate` Hz and `channels` channels.
    pub fn open(
        device: &str,
        rate: u32,
        channels: u8,
        format: SampleFormat,
        period: usize,
        buffer: usize,
        clock: SharedClock,
    ) -> Result<AlsaOutput, OutputError> {
        let dev = device.to_string();
        let e = |op: &'static str| {
            let dev = dev.clone();
            move |source| OutputError::Alsa {
                device: dev,
                op,
                source,
            }
        };
        let pcm = PCM::new(device, Direction::Playback, false).map_err(e("open"))?;
        let s16;
        let tstamps;
        {
            let hwp = HwParams::any(&pcm).map_err(e("hw_params_any"))?;
            hwp.set_access(Access::RWInterleaved)
                .map_err(e("set_access"))?;
            hwp.set_channels(channels as u32)
                .map_err(e("set_channels"))?;
            hwp.set_rate(rate, ValueOr::Nearest)
                .map_err(e("set_rate"))?;
            let want16 = format == SampleFormat::S16;
            s16 = if want16 && hwp.set_format(Format::s16()).is_ok() {
                true
            } else if hwp.set_format(Format::s32()).is_ok() {
                false
            } else {
                hwp.set_format(Format::s16()).map_err(e("set_format"))?;
                true
            };
            hwp.set_period_size_near(period as alsa::pcm::Frames, ValueOr::Nearest)
                .map_err(e("set_period_size"))?;
            hwp.set_buffer_size_near(buffer as alsa::pcm::Frames)
                .map_err(e("set_buffer_size"))?;
            pcm.hw_params(&hwp).map_err(e("hw_params"))?;
        }
        let (granted_rate, period, buffer) = {
            let hwp = pcm.hw_params_current().map_err(e("hw_params_current"))?;
            (
                hwp.get_rate().map_err(e("get_rate"))?,
                hwp.get_period_size().map_err(e("get_period_size"))? as usize,
                hwp.get_buffer_size().map_err(e("get_buffer_size"))? as usize,
            )
        };
        if granted_rate != rate {
            return Err(OutputError::AlsaConfig {
                device: device.into(),
                detail: format!(
                    "asked for {rate} Hz, device granted {granted_rate} Hz (use a plug device)"
                ),
            });
        }
        {
            let swp = pcm.sw_params_current().map_err(e("sw_params_current"))?;
            swp.set_start_threshold(period as alsa::pcm::Frames)
                .map_err(e("set_start_threshold"))?;
            // Timestamps taken with each hardware pointer update, on CLOCK_MONOTONIC_RAW: the
            // status then says how much was queued *at that instant*, which keeps a device
            // whose pointer moves a period at a time from looking late by up to a period.
            tstamps = swp.set_tstamp_mode(true).is_ok()
                && swp.set_tstamp_type(TstampType::MonotonicRaw).is_ok();
            pcm.sw_params(&swp).map_err(e("sw_params"))?;
        }
        log::info!(
            "ALSA {device}: {rate} Hz, {channels} ch, {}, period {period}, buffer {buffer}",
            if s16 { "S16" } else { "S32" }
        );
        Ok(AlsaOutput {
            pcm,
            device: device.into(),
            rate,
            channels,
            s16,
            period,
            buffer,
            clock,
            buf16: Vec::with_capacity(period * channels as usize),
            buf32: Vec::with_capacity(period * channels as usize),
            written: 0,
            zero_delays: 0,
            unpaced: false,
            tstamps,
        })
    }

    fn err(&self, op: &'static str) -> impl Fn(alsa::Error) -> OutputError + '_ {
        move |source| OutputError::Alsa {
            device: self.device.clone(),
            op,
            source,
        }
    }
}

impl Output for AlsaOutput {
    fn info(&self) -> OutputInfo {
        OutputInfo {
            backend: "alsa",
            device: self.device.clone(),
            rate: self.rate,
            channels: self.channels,
            sample_format: if self.s16 { "s16" } else { "s32" }.into(),
            period_frames: self.period,
            buffer_frames: self.buffer,
        }
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        let ch = self.channels as usize;
        let mut off = 0;
        if self.s16 {
            self.buf16.clear();
            self.buf16.extend(samples.iter().map(|&s| to_i16(s)));
        } else {
            self.buf32.clear();
            self.buf32.extend(samples.iter().map(|&s| to_i32(s)));
        }
        while off < samples.len() {
            // SAFETY: `open` set the hardware format to S16 or S32 (native endian) and recorded
            // which in `s16`; the checked constructors would query (and malloc) the hardware
            // parameters on every write.
            let n = if self.s16 {
                let io = unsafe { self.pcm.io_unchecked::<i16>() };
                io.writei(&self.buf16[off..]).map_err(self.err("writei"))?
            } else {
                let io = unsafe { self.pcm.io_unchecked::<i32>() };
                io.writei(&self.buf32[off..]).map_err(self.err("writei"))?
            };
            off += n * ch;
            self.written += n as u64;
        }
        Ok(())
    }

    fn delay(&mut self) -> Result<Option<Delay>, OutputError> {
        if self.unpaced {
            return Ok(None);
        }
        // One call: the status syncs the hardware pointer and gives the delay, the time it held
        // and the state; xruns, suspends and unplugs become errors for the caller to recover.
        let status = self.pcm.status().map_err(self.err("status"))?;
        let state = status.get_state();
        let broken = match state {
            State::XRun => Some(libc::EPIPE),
            State::Suspended => Some(libc::ESTRPIPE),
            State::Disconnected => Some(libc::ENODEV),
            _ => None,
        };
        if let Some(errno) = broken {
            return Err(self.err("status")(alsa::Error::new(
                "snd_pcm_status",
                errno,
            )));
        }
        // alsa::pcm::Frames is a C long: 32 bits on armhf.
        #[allow(clippy::useless_conversion)]
        let frames = i64::from(status.get_delay());
        let now = self.clock.now();
        let at = if self.tstamps {
            let ts = status.get_htstamp();
            #[allow(clippy::unnecessary_cast)]
            let stamp = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64;
            let age = crate::clock::monotonic_raw_ns() - stamp;
            // No stamp (plugins such as null), or one from another clock (a time namespace
            // shifts our clock but not the kernel's): use the time of the call.
            if stamp > 0 && (0..200_000_000).contains(&age) {
                now.plus(-age)
            } else {
                now
            }
        } else {
            now
        };
        // Some PCMs (null, file over null) consume instantly and always report no delay: the
        // playout thread then paces itself from its own timeline.
        if frames == 0 && state == State::Running && self.written > 2 * self.buffer as u64 {
            self.zero_delays += 1;
            if self.zero_delays >= 3 {
                log::info!(
                    "ALSA {}: device reports no delay; pacing from the clock",
                    self.device
                );
                self.unpaced = true;
                return Ok(None);
            }
        } else {
            self.zero_delays = 0;
        }
        Ok(Some(Delay { frames, at }))
    }

    fn recover(&mut self) -> Result<(), OutputError> {
        match self.pcm.state() {
            State::XRun | State::Suspended | State::Setup | State::Disconnected => {
                self.pcm.prepare().map_err(self.err("prepare"))
            }
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        let _ = self.pcm.drain();
        Ok(())
    }
}

/// A sample in [-1, 1) to 16 bits, rounded half away from zero and clipped. Truncation of
/// `v ± 0.5` is `round` without the libm call `f32::round` costs on baseline x86-64 (no SSE4.1);
/// `as` saturates, so the clip is an integer clamp.
#[inline]
pub fn to_i16(s: f32) -> i16 {
    let v = s * 32_768.0;
    ((v + 0.5f32.copysign(v)) as i32).clamp(-32_768, 32_767) as i16
}

/// A sample in [-1, 1) to 32 bits, the same way (in f64: f32 cannot hold 32-bit integers).
#[inline]
pub fn to_i32(s: f32) -> i32 {
    let v = s as f64 * 2_147_483_648.0;
    (v + 0.5f64.copysign(v)) as i32
}

/// Makes alsa-lib read its configuration again at the next open. It only notices changes to
/// its top-level files by itself, not to ~/.asoundrc or files those include, so a device
/// defined after start (or a card plugged in with its own config) would never appear. Call
/// only while no PCM is open in this process.
pub fn reload_config() {
    // SAFETY: frees alsa-lib's global config cache; no other thread of ours is inside
    // alsa-lib (the playout thread is the only user, and it is the caller, between opens).
    unsafe {
        alsa_sys::snd_config_update_free_global();
    }
}

#[cfg(test)]
mod tests {
    use super::{to_i16, to_i32};

    #[test]
    fn conversion_rounds_like_round_and_clips() {
        let reference16 = |s: f32| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        let reference32 = |s: f32| {
            (s as f64 * 2_147_483_648.0)
                .round()
                .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32
        };
        // Every 16-bit value exactly, the half-way points between them, and a sweep.
        let mut inputs: Vec<f32> = (-32_768..32_768).map(|k| k as f32 / 32_768.0).collect();
        inputs.extend((-32_768..32_767).map(|k| (k as f32 + 0.5) / 32_768.0));
        inputs.extend((0..100_000).map(|i| (i as f32 / 50_000.0 - 1.0) * 1.01));
        inputs.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            -1.5,
            1e-9,
            -1e-9,
            f32::MAX,
            f32::MIN,
        ]);
        for &s in &inputs {
            assert_eq!(to_i16(s), reference16(s), "{s}");
            assert_eq!(to_i32(s), reference32(s), "{s}");
        }
    }
}
