//! A playable item: decoder + remixer + resampler, producing frames in the zone's format.

use super::capture::CaptureReader;
use super::decode::FileDecoder;
use super::pipe::{PipeFormat, PipeReader};
use super::radio::RadioReader;
use super::remix::Remixer;
use super::resample::StreamResampler;
use super::{AudioError, Item};
use std::path::{Path, PathBuf};

/// Where a source's frames come from.
enum Input {
    File(FileDecoder),
    /// A FIFO of raw PCM (never ends: silence while it is empty).
    Pipe(PipeReader),
    /// Internet radio (never ends either).
    Radio(RadioReader),
    /// ALSA capture, line-in (never ends).
    Capture(CaptureReader),
}

impl Input {
    fn rate(&self) -> u32 {
        match self {
            Input::File(d) => d.rate,
            Input::Pipe(p) => p.fmt.rate,
            Input::Radio(r) => r.rate,
            Input::Capture(c) => c.fmt.rate,
        }
    }
    fn channels(&self) -> usize {
        match self {
            Input::File(d) => d.channels,
            Input::Pipe(p) => p.fmt.channels as usize,
            Input::Radio(r) => r.channels,
            Input::Capture(c) => c.fmt.channels as usize,
        }
    }
    fn layout(&self) -> Option<symphonia::core::audio::Channels> {
        match self {
            Input::File(d) => d.layout,
            Input::Pipe(_) | Input::Radio(_) | Input::Capture(_) => None,
        }
    }
    fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        match self {
            Input::File(d) => d.next_chunk(out),
            Input::Pipe(p) => p.next_chunk(out),
            Input::Radio(r) => r.next_chunk(out),
            Input::Capture(c) => c.next_chunk(out),
        }
    }
}

/// Formats of the sources that carry none (FIFOs and capture devices), and whether a radio
/// URL may name this box or a link-local address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawFormats {
    pub fifo: PipeFormat,
    pub capture: PipeFormat,
    pub radio_local: bool,
}

/// An open file (or FIFO) producing interleaved f32 frames at the zone's rate and channel
/// count.
pub struct Source {
    path: PathBuf,
    decoder: Input,
    remix: Remixer,
    resampler: Option<StreamResampler>,
    /// The input rate the resampler was made for (a radio stream's shows with its first audio).
    res_rate: u32,
    rate: u32,
    channels: usize,
    ready: Vec<f32>,
    ready_pos: usize,
    scratch: Vec<f32>,
    mixed: Vec<f32>,
    ended: bool,
    /// Zone frames handed out so far (position).
    position: u64,
}

impl Source {
    /// Opens `path` (whatever it is: see `Item::classify`) for a zone of `rate` Hz and
    /// `channels` channels.
    pub fn open(path: &Path, rate: u32, channels: usize) -> Result<Source, AudioError> {
        let item = Item::classify(path.to_path_buf());
        Self::open_with(&item, rate, channels, RawFormats::default())
    }

    /// Opens `item`; a FIFO is read as raw PCM of `raw.fifo` format, an `alsa:` capture device
    /// in `raw.capture` format.
    pub fn open_with(
        item: &Item,
        rate: u32,
        channels: usize,
        raw: RawFormats,
    ) -> Result<Source, AudioError> {
        let decoder = match item {
            Item::Capture(uri) => Input::Capture(CaptureReader::open(uri, raw.capture)?),
            Item::Radio(url) => {
                Input::Radio(RadioReader::open(url, rate, channels, raw.radio_local)?)
            }
            Item::Fifo(path) => Input::Pipe(PipeReader::open(path, raw.fifo)?),
            Item::File(path) => Input::File(FileDecoder::open(path)?),
        };
        let mut s = Source {
            path: item.path().to_path_buf(),
            remix: Remixer::new(decoder.channels().max(1), channels, decoder.layout()),
            resampler: None,
            res_rate: 0,
            decoder,
            rate,
            channels,
            ready: Vec::new(),
            ready_pos: 0,
            scratch: Vec::new(),
            mixed: Vec::new(),
            ended: false,
            position: 0,
        };
        s.reset_resampler()?;
        Ok(s)
    }

    fn reset_resampler(&mut self) -> Result<(), AudioError> {
        self.res_rate = self.decoder.rate();
        self.resampler = if self.decoder.rate() != self.rate {
            Some(StreamResampler::new(
                self.decoder.rate(),
                self.rate,
                self.channels,
            )?)
        } else {
            None
        };
        Ok(())
    }

    /// The file this source plays.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Title tag or file name.
    pub fn title(&self) -> String {
        let tag = match &self.decoder {
            Input::File(d) => d.title(),
            Input::Pipe(_) => None,
            Input::Radio(r) => return r.title(),
            Input::Capture(c) => return c.title(),
        };
        tag.map(str::to_string).unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }
    /// Artist and album tags, when the file has them.
    pub fn artist_album(&self) -> (Option<String>, Option<String>) {
        match &self.decoder {
            Input::File(d) => (d.artist().map(String::from), d.album().map(String::from)),
            Input::Pipe(_) | Input::Radio(_) | Input::Capture(_) => (None, None),
        }
    }
    /// The title changes while it plays (internet radio).
    pub fn live_title(&self) -> bool {
        matches!(self.decoder, Input::Radio(_))
    }
    /// Duration in seconds, when the container announces it.
    pub fn duration_s(&self) -> Option<f64> {
        match &self.decoder {
            Input::File(d) => d.n_frames.map(|n| n as f64 / d.rate as f64),
            Input::Pipe(_) | Input::Radio(_) | Input::Capture(_) => None,
        }
    }
    /// Position in seconds.
    pub fn position_s(&self) -> f64 {
        self.position as f64 / self.rate as f64
    }
    /// Source sample rate and channel count.
    pub fn source_format(&self) -> (u32, usize) {
        (self.decoder.rate(), self.decoder.channels())
    }

    /// Appends up to `frames` frames to `out`; returns how many. Fewer than asked means the
    /// end of the file was reached. A decode error mid-file ends the item with that error
    /// (frames already returned stay valid).
    pub fn read(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let want = frames * self.channels;
        let mut got = 0;
        while got < want {
            if self.ready_pos < self.ready.len() {
                let n = (want - got).min(self.ready.len() - self.ready_pos);
                out.extend_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
                self.ready_pos += n;
                got += n;
                continue;
            }
            if self.ended {
                break;
            }
            self.refill()?;
        }
        let f = got / self.channels;
        self.position += f as u64;
        Ok(f)
    }

    fn refill(&mut self) -> Result<(), AudioError> {
        self.ready.clear();
        self.ready_pos = 0;
        self.scratch.clear();
        let n = match self.decoder.next_chunk(&mut self.scratch) {
            Ok(n) => n,
            Err(e) => {
                self.ended = true;
                return Err(e);
            }
        };
        self.mixed.clear();
        // Some containers (AAC in MP4) only reveal the channel count with the first packet.
        if self.remix.inputs() != self.decoder.channels() {
            self.remix = Remixer::new(
                self.decoder.channels().max(1),
                self.channels,
                self.decoder.layout(),
            );
        }
        if n == 0 {
            self.ended = true;
            if let Some(r) = &mut self.resampler {
                r.finish(&mut self.ready)?;
            }
            return Ok(());
        }
        if self.decoder.rate() != self.res_rate {
            // A live stream's format shows with its first audio (and may change on reconnect).
            self.reset_resampler()?;
        }
        self.remix.process(&self.scratch, &mut self.mixed);
        match &mut self.resampler {
            Some(r) => r.push(&self.mixed, &mut self.ready)?,
            None => std::mem::swap(&mut self.ready, &mut self.mixed),
        }
        Ok(())
    }

    /// Seeks to `seconds`.
    pub fn seek(&mut self, seconds: f64) -> Result<(), AudioError> {
        match &mut self.decoder {
            Input::File(d) => d.seek(seconds)?,
            Input::Pipe(_) | Input::Radio(_) | Input::Capture(_) => {
                return Err(AudioError::Seek {
                    path: self.path.clone(),
                    reason: "a live stream cannot seek".into(),
                })
            }
        }
        self.ready.clear();
        self.ready_pos = 0;
        self.ended = false;
        self.reset_resampler()?;
        self.position = (seconds.max(0.0) * self.rate as f64) as u64;
        Ok(())
    }
}
