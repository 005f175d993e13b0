//! A FIFO of raw PCM as a source: the way MPD, Mopidy, librespot and shairport-sync feed
//! Snapcast (`snapfifo`), so they plug into chorus unchanged. The format is not in the stream:
//! it is configured (`[controller] fifo-format = "48000:16:2"`, Snapcast's notation).
//!
//! The controller reads the pipe at the stream's real-time pace; a writer that is ahead blocks
//! on a full pipe, which paces it. When nothing is there (no writer yet, the writer paused or
//! went away) the source gives silence, so the zone keeps time and plays whatever comes next
//! as soon as it comes: a FIFO item never ends by itself.

use super::AudioError;
use crate::wire::{Pcm, SampleFormat};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The PCM format of a FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeFormat {
    pub rate: u32,
    pub format: SampleFormat,
    pub channels: u8,
}

impl Default for PipeFormat {
    fn default() -> Self {
        PipeFormat {
            rate: 48_000,
            format: SampleFormat::S16,
            channels: 2,
        }
    }
}

impl std::str::FromStr for PipeFormat {
    type Err = String;
    /// `rate:bits:channels`, e.g. `48000:16:2` (bits 16, 24 — packed in 3 bytes — or 32).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [rate, bits, ch] = parts.as_slice() else {
            return Err(format!("{s:?} is not rate:bits:channels (e.g. 48000:16:2)"));
        };
        let rate: u32 = rate
            .parse()
            .ok()
            .filter(|r| (8_000..=384_000).contains(r))
            .ok_or_else(|| format!("rate {rate:?} is not 8000..=384000"))?;
        let format = match *bits {
            "16" => SampleFormat::S16,
            "24" => SampleFormat::S24,
            "32" => SampleFormat::S32,
            _ => return Err(format!("bits {bits:?} is not 16, 24 or 32")),
        };
        let channels: u8 = ch
            .parse()
            .ok()
            .filter(|c| (1..=8).contains(c))
            .ok_or_else(|| format!("channels {ch:?} is not 1..=8"))?;
        Ok(PipeFormat {
            rate,
            format,
            channels,
        })
    }
}

/// True if `path` is a FIFO (named pipe).
pub fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// An open FIFO.
pub struct PipeReader {
    path: PathBuf,
    file: std::fs::File,
    pub fmt: PipeFormat,
    /// Bytes read but not yet a whole frame.
    carry: Vec<u8>,
    buf: Vec<u8>,
}

/// Frames of silence given when the pipe is empty (10 ms at 48 kHz): small enough that audio
/// arriving after a pause starts at once.
const SILENCE_FRAMES: usize = 480;

impl PipeReader {
    /// Opens without waiting for a writer.
    pub fn open(path: &Path, fmt: PipeFormat) -> Result<PipeReader, AudioError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| AudioError::Open {
                path: path.into(),
                source,
            })?;
        Ok(PipeReader {
            path: path.into(),
            file,
            fmt,
            carry: Vec::new(),
            buf: vec![0u8; 16_384],
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends what the pipe holds (up to 16 KiB) as interleaved floats, or silence when it is
    /// empty; returns the frames appended (never 0).
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let frame_bytes = self.fmt.format.bytes() * self.fmt.channels as usize;
        let n = match self.file.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => {
                return Err(AudioError::Decode {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        // n == 0 with no writer is end of file; with a writer that has nothing yet, EAGAIN:
        // silence either way, and the next writer to open the pipe is read from.
        if n == 0 {
            let frames = SILENCE_FRAMES * self.fmt.rate as usize / 48_000;
            out.resize(out.len() + frames.max(1) * self.fmt.channels as usize, 0.0);
            return Ok(frames.max(1));
        }
        self.carry.extend_from_slice(&self.buf[..n]);
        let whole = self.carry.len() / frame_bytes * frame_bytes;
        self.fmt.format.decode(&self.carry[..whole], out);
        self.carry.drain(..whole);
        Ok(whole / frame_bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_refuse() {
        assert_eq!("48000:16:2".parse(), Ok(PipeFormat::default()));
        let f: PipeFormat = "44100:24:1".parse().unwrap();
        assert_eq!(
            (f.rate, f.format, f.channels),
            (44_100, SampleFormat::S24, 1)
        );
        for bad in [
            "",
            "48000",
            "48000:16",
            "48000:12:2",
            "0:16:2",
            "48000:16:0",
            "x:y:z",
        ] {
            assert!(bad.parse::<PipeFormat>().is_err(), "{bad}");
        }
    }

    /// A fresh FIFO at `dir/name` (for tests).
    pub(crate) fn make_fifo(dir: &Path, name: &str) -> std::path::PathBuf {
        let _ = std::fs::create_dir_all(dir);
        let fifo = dir.join(name);
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        fifo
    }

    #[test]
    fn reads_whole_frames_and_gives_silence_when_empty() {
        let dir = std::env::temp_dir().join(format!("chorus-pipe-{}", std::process::id()));
        let fifo = make_fifo(&dir, "f");
        assert!(is_fifo(&fifo));
        let mut r = PipeReader::open(&fifo, PipeFormat::default()).unwrap();
        let mut out = vec![];
        // No writer: silence.
        assert_eq!(r.next_chunk(&mut out).unwrap(), 480);
        assert!(out.iter().all(|s| *s == 0.0));
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        use std::io::Write;
        // One and a half frames: one frame now, the rest with the next bytes.
        w.write_all(&[0x00, 0x40, 0x00, 0xc0, 0x01, 0x00]).unwrap();
        out.clear();
        assert_eq!(r.next_chunk(&mut out).unwrap(), 1);
        assert_eq!(out, vec![0.5, -0.5]);
        w.write_all(&[0x02, 0x00]).unwrap();
        out.clear();
        assert_eq!(r.next_chunk(&mut out).unwrap(), 1);
        assert_eq!(out, vec![1.0 / 32_768.0, 2.0 / 32_768.0]);
        // Writer open, nothing written: silence.
        out.clear();
        assert_eq!(r.next_chunk(&mut out).unwrap(), 480);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
