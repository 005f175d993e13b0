//! The real output: an ALSA PCM through alsa-lib. Asks for a period and buffer size, reads back
//! what the device granted, and reports the delay of every write.

use super::headroom::Headroom;
use super::{Delay, Output, OutputError, OutputInfo};
use crate::clock::{Frames, SharedClock};
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
    /// The bite it takes and what of its delay is out of the ring.
    headroom: Headroom,
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
            headroom: Headroom::default(),
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
            backend: "alsa".into(),
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
        // Converted in place over buffers of the period's length (resized only when it changes).
        if self.s16 {
            self.buf16.resize(samples.len(), 0);
            for (o, &s) in self.buf16.iter_mut().zip(samples) {
                *o = to_i16(s);
            }
        } else {
            self.buf32.resize(samples.len(), 0);
            for (o, &s) in self.buf32.iter_mut().zip(samples) {
                *o = to_i32(s);
            }
        }
        while off < samples.len() {
            // SAFETY: `open` set the hardware format to S16 or S32 (native endian) and recorded
            // which in `s16`; the checked constructors would query (and malloc) the hardware
            // parameters on every write.
            let n = if self.s16 {
                // SAFETY: see above; the format is S16.
                let io = unsafe { self.pcm.io_unchecked::<i16>() };
                io.writei(&self.buf16[off..]).map_err(self.err("writei"))?
            } else {
                // SAFETY: as above, the format is S32.
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
        // What the device bites off its ring at once. Not from a device that reports no delay
        // (null consumes each write at once: every write would look like a bite).
        if frames > 0 {
            // alsa::pcm::Frames is a C long: 32 bits on armhf.
            #[allow(clippy::useless_conversion)]
            let avail = i64::from(status.get_avail());
            let fill = self.buffer as i64 - avail.clamp(0, self.buffer as i64);
            self.headroom.note(
                self.written as i64 - fill,
                now.0,
                frames - fill,
                self.buffer as i64 / 2,
            );
        }
        Ok(Some(Delay { frames, at }))
    }

    fn headroom(&self) -> Frames {
        Frames(self.headroom.frames())
    }

    fn recover(&mut self) -> Result<(), OutputError> {
        self.headroom.restart();
        match self.pcm.state() {
            State::XRun | State::Suspended | State::Setup | State::Disconnected => {
                self.pcm.prepare().map_err(self.err("prepare"))
            }
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        // Let what is queued play out, but never wait on the device for it: `snd_pcm_drain`
        // of a plugin whose server went away (JACK, PulseAudio) spins for ever, and a stop must
        // not hang. Wait for the queue's own length (at most half a second), then drop.
        let queued = self.pcm.delay().unwrap_or(0).max(0) as u64;
        let ms = (queued * 1000 / self.rate.max(1) as u64).min(500);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = self.pcm.drop();
        Ok(())
    }
}

/// A sample in [-1, 1) to 16 bits, rounded half away from zero and clipped.
#[inline]
pub fn to_i16(s: f32) -> i16 {
    round_within(s * 32_768.0, -32_768.0, 32_767.0) as i16
}

/// A sample in [-1, 1) to 32 bits, the same way. Scaling by 2^31 is exact in f32, and f32
/// holds what a 24-bit stream carries: no f64 needed.
#[inline]
pub fn to_i32(s: f32) -> i32 {
    // The largest f32 below 2^31.
    round_within(s * 2_147_483_648.0, -2_147_483_648.0, 2_147_483_520.0)
}

/// `v` clipped to [lo, hi] (integers an i32 holds; NaN gives `lo`) and rounded half away from
/// zero, in operations that vectorise on baseline x86-64 as on NEON: no libm call (`f32::round`
/// is one without SSE4.1) and no saturating cast (scalar there). The truncation is exact, and so
/// is the remainder it leaves, so the rounding is exactly that of `round`.
#[inline]
fn round_within(v: f32, lo: f32, hi: f32) -> i32 {
    let v = v.max(lo).min(hi);
    // SAFETY: `v` is finite and within i32's range (clipped to integers it holds; `max`
    // returns `lo` for NaN).
    let t: i32 = unsafe { v.to_int_unchecked() };
    let rest = v - t as f32;
    // Within [lo, hi] a remainder only exists below 2^23: the step never leaves i32.
    t + i32::from(rest >= 0.5) - i32::from(rest <= -0.5)
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
        // Above full scale, 32 bits clip at 2^31 - 128, the largest f32 below 2^31 (the bits
        // under a 24-bit DAC's).
        let reference32 = |s: f32| {
            (s as f64 * 2_147_483_648.0)
                .round()
                .clamp(-2_147_483_648.0, 2_147_483_520.0) as i32
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
            f32::INFINITY,
            f32::NEG_INFINITY,
            32_767.5 / 32_768.0,
            -32_768.5 / 32_768.0,
            0.5 / 2_147_483_648.0,
            -0.5 / 2_147_483_648.0,
            1.5 / 2_147_483_648.0,
            0.49999997 / 2_147_483_648.0,
        ]);
        // Every 24-bit value lands on its 32-bit one exactly (24-bit streams play bit-exact).
        for v in (-(1 << 23)..(1 << 23))
            .step_by(97)
            .chain([-(1 << 23), (1 << 23) - 1])
        {
            assert_eq!(to_i32(v as f32 / 8_388_608.0), v << 8, "{v}");
        }
        for &s in &inputs {
            assert_eq!(to_i16(s), reference16(s), "{s}");
            assert_eq!(to_i32(s), reference32(s), "{s}");
        }
    }
}
