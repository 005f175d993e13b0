//! The stream tap (testing only).

/// Testing only: records the scheduled stream before the resampler (see `testing.stream-tap`).
/// Writes a file from the playout thread, so it is not for production use.
pub struct StreamTap {
    wav: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
}

impl StreamTap {
    pub fn create(path: &str, rate: u32, channels: u8) -> Result<Self, hound::Error> {
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(StreamTap {
            wav: hound::WavWriter::create(path, spec)?,
        })
    }
    pub(super) fn write(&mut self, samples: &[f32]) {
        for s in samples {
            let _ = self
                .wav
                .write_sample((s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
        }
    }
    pub(super) fn finish(self) {
        let _ = self.wav.finalize();
    }
}
