//! Decoding any supported file to interleaved f32 frames with symphonia.

use std::fs::File;
use std::path::{Path, PathBuf};
use symphonia::core::audio::{Channels, SampleBuffer};
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::Time;

/// Why an audio file cannot be played (or could not be played to its end).
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not a supported audio file: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: decode failed: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: truncated: decoded {decoded} of {expected} frames")]
    Truncated {
        path: PathBuf,
        decoded: u64,
        expected: u64,
    },
    #[error("{path}: cannot seek: {reason}")]
    Seek { path: PathBuf, reason: String },
    #[error("resampler: {0}")]
    Resample(String),
}

/// Consecutive undecodable packets after which a file is given up.
const MAX_BAD_PACKETS: u32 = 64;

/// A file being decoded.
pub struct FileDecoder {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    /// Source rate, Hz.
    pub rate: u32,
    /// Source channel count.
    pub channels: usize,
    /// Channel positions, when the container says.
    pub layout: Option<Channels>,
    /// Frames the container announces, when it does.
    pub n_frames: Option<u64>,
    decoded: u64,
    discard: u64,
    sample_buf: Option<SampleBuffer<f32>>,
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
}

impl FileDecoder {
    /// Opens and probes `path`. Fails with a clear error for missing, empty or unknown files.
    pub fn open(path: &Path) -> Result<FileDecoder, AudioError> {
        let file = File::open(path).map_err(|source| AudioError::Open {
            path: path.into(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(AudioError::Empty { path: path.into() });
        }
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let mut probed = symphonia::default::get_probe()
            .format(&hint, mss, &opts, &MetadataOptions::default())
            .map_err(|e| AudioError::Unsupported {
                path: path.into(),
                reason: e.to_string(),
            })?;
        let rev = probed
            .metadata
            .get()
            .and_then(|m| m.current().cloned())
            .or_else(|| probed.format.metadata().current().cloned());
        let tag = |key: symphonia::core::meta::StandardTagKey| {
            rev.as_ref().and_then(|rev| {
                rev.tags()
                    .iter()
                    .find(|t| t.std_key == Some(key))
                    // RIFF INFO strings keep their NUL terminator.
                    .map(|t| t.value.to_string().trim_matches(['\0', ' ']).to_string())
                    .filter(|v| !v.is_empty())
            })
        };
        use symphonia::core::meta::StandardTagKey as K;
        let title = tag(K::TrackTitle);
        let artist = tag(K::Artist).or_else(|| tag(K::AlbumArtist));
        let album = tag(K::Album);
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| AudioError::Unsupported {
                path: path.into(),
                reason: "no audio track".into(),
            })?;
        let params = track.codec_params.clone();
        let track_id = track.id;
        let rate = params
            .sample_rate
            .filter(|r| (1_000..=768_000).contains(r))
            .ok_or_else(|| AudioError::Unsupported {
                path: path.into(),
                reason: "no valid sample rate".into(),
            })?;
        let layout = params.channels;
        let channels = layout.map(|c| c.count()).unwrap_or(0);
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| AudioError::Unsupported {
                path: path.into(),
                reason: e.to_string(),
            })?;
        Ok(FileDecoder {
            path: path.into(),
            format,
            decoder,
            track_id,
            rate,
            channels,
            layout,
            n_frames: params.n_frames,
            decoded: 0,
            discard: 0,
            sample_buf: None,
            title,
            artist,
            album,
        })
    }

    /// Title tag, if the file has one.
    pub fn artist(&self) -> Option<&str> {
        self.artist.as_deref()
    }
    pub fn album(&self) -> Option<&str> {
        self.album.as_deref()
    }
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Decodes the next packet, appending interleaved samples to `out`. Returns the number of
    /// frames appended; `Ok(0)` means the end of the stream.
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let mut bad = 0u32;
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.end_of_stream();
                }
                Err(SymError::ResetRequired) => return self.end_of_stream(),
                Err(e) => {
                    bad += 1;
                    if bad > MAX_BAD_PACKETS {
                        return Err(self.decode_err(e.to_string()));
                    }
                    continue;
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(b) => b,
                Err(SymError::DecodeError(e)) => {
                    bad += 1;
                    if bad > MAX_BAD_PACKETS {
                        return Err(self.decode_err(e.to_string()));
                    }
                    log::debug!("{}: skipping undecodable packet: {e}", self.path.display());
                    continue;
                }
                Err(e) => return Err(self.decode_err(e.to_string())),
            };
            let spec = *buf.spec();
            if self.channels == 0 {
                self.channels = spec.channels.count();
                self.layout = Some(spec.channels);
            }
            if spec.channels.count() != self.channels || spec.rate != self.rate {
                return Err(self.decode_err("stream format changed mid-file".into()));
            }
            let frames = buf.frames();
            if frames == 0 {
                continue;
            }
            let sb = match &mut self.sample_buf {
                Some(sb) if sb.capacity() >= buf.capacity() => sb,
                slot => slot.insert(SampleBuffer::new(buf.capacity() as u64, spec)),
            };
            sb.copy_interleaved_ref(buf);
            let samples = &sb.samples()[..frames * self.channels];
            let skip = (self.discard.min(frames as u64)) as usize;
            self.discard -= skip as u64;
            out.extend_from_slice(&samples[skip * self.channels..]);
            self.decoded += (frames - skip) as u64;
            if frames > skip {
                return Ok(frames - skip);
            }
        }
    }

    fn end_of_stream(&mut self) -> Result<usize, AudioError> {
        if let Some(expected) = self.n_frames {
            // Allow a codec's padding to differ by a packet or so.
            if self.decoded + (self.rate as u64 / 10) < expected && self.discard == 0 {
                return Err(AudioError::Truncated {
                    path: self.path.clone(),
                    decoded: self.decoded,
                    expected,
                });
            }
        }
        if self.decoded == 0 {
            return Err(self.decode_err("no audio frames in file".into()));
        }
        Ok(0)
    }

    fn decode_err(&self, reason: String) -> AudioError {
        AudioError::Decode {
            path: self.path.clone(),
            reason,
        }
    }

    /// Seeks to `seconds` from the start; the next chunk starts exactly there when the format
    /// allows accurate seeking.
    pub fn seek(&mut self, seconds: f64) -> Result<(), AudioError> {
        let to = SeekTo::Time {
            time: Time::from(seconds.max(0.0)),
            track_id: Some(self.track_id),
        };
        let seeked = self
            .format
            .seek(SeekMode::Accurate, to)
            .map_err(|e| AudioError::Seek {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        self.decoder.reset();
        let ts_diff = seeked.required_ts.saturating_sub(seeked.actual_ts);
        let tb = self
            .format
            .tracks()
            .iter()
            .find(|t| t.id == self.track_id)
            .and_then(|t| t.codec_params.time_base);
        self.discard = match tb {
            Some(tb) => {
                (ts_diff as u128 * self.rate as u128 * tb.numer as u128 / tb.denom.max(1) as u128)
                    as u64
            }
            None => ts_diff,
        };
        self.decoded = (seconds.max(0.0) * self.rate as f64) as u64;
        Ok(())
    }
}
