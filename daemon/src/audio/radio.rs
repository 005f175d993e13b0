//! Internet radio: an HTTP(S) stream (MP3, AAC, Ogg, FLAC; TLS with rustls and the Mozilla
//! roots) with ICY metadata (the stream title
//! between the audio, every `icy-metaint` bytes), decoded on a thread of its own so that a slow
//! server never holds up the zone. The source gives what has been decoded, after a prebuffer of
//! a second (and after every underrun, again), and silence while there is nothing: the zone
//! keeps time. A dropped connection is made again, after 1, 2, 4 ... 30 s; the stream never
//! ends by itself. When the source is dropped (stop, next) its thread ends at its next read,
//! however slowly the server sends (a server trickling a byte a second held one for ever), and
//! at most `MAX_READERS` threads live at once (a burst of `play` calls against a stalling
//! server reached the unit's task limit).

use super::AudioError;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// True for the URIs this source plays.
pub fn is_radio(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// Decoded audio: interleaved samples, rate, channels.
struct Chunk {
    samples: Vec<f32>,
    rate: u32,
    channels: usize,
}

/// What the reader thread tells the source.
#[derive(Default)]
struct Shared {
    /// The station (icy-name) and the current title (StreamTitle).
    name: Option<String>,
    title: Option<String>,
    connections: u64,
}

/// Reader threads alive, and the most there may be.
static LIVE: AtomicUsize = AtomicUsize::new(0);
const MAX_READERS: usize = 8;

/// A reader thread's life: told to stop (the source was dropped), and ended.
#[derive(Default)]
struct Life {
    stop: AtomicBool,
    ended: AtomicBool,
}

/// Counts a reader thread while it lives.
struct Alive(Arc<Life>);

impl Drop for Alive {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.store(true, Ordering::SeqCst);
    }
}

/// The source side of a radio stream.
pub struct RadioReader {
    url: String,
    rx: Receiver<Chunk>,
    shared: Arc<Mutex<Shared>>,
    life: Arc<Life>,
    pub rate: u32,
    pub channels: usize,
    /// Decoded audio waiting, and whether playback has (re)started after a prebuffer.
    queue: std::collections::VecDeque<Chunk>,
    queued_frames: usize,
    flowing: bool,
}

/// Decoded audio held before playing starts (and again after an underrun).
const PREBUFFER_S: f64 = 1.0;
/// Decoded audio held at most (more waits undecoded, the reader thread blocked).
const HOLD_S: f64 = 5.0;

impl RadioReader {
    /// Starts the reader thread; `rate` and `channels` are what silence is given in until the
    /// stream says otherwise.
    pub fn open(
        url: &str,
        rate: u32,
        channels: usize,
        allow_local: bool,
    ) -> Result<RadioReader, AudioError> {
        let open = |source| AudioError::Open {
            path: url.into(),
            source,
        };
        if LIVE.fetch_add(1, Ordering::SeqCst) >= MAX_READERS {
            LIVE.fetch_sub(1, Ordering::SeqCst);
            return Err(open(std::io::Error::other(format!(
                "{MAX_READERS} radio streams are open or still closing; try again in 10 s"
            ))));
        }
        let life = Arc::new(Life::default());
        let alive = Alive(life.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread = Fetch {
            url: url.to_string(),
            tx,
            shared: shared.clone(),
            allow_local,
            life: alive.0.clone(),
        };
        std::thread::Builder::new()
            .name("chorus-radio".into())
            .spawn(move || {
                thread.run();
                drop(alive);
            })
            .map_err(open)?;
        Ok(RadioReader {
            url: url.into(),
            rx,
            shared,
            life,
            rate,
            channels,
            queue: Default::default(),
            queued_frames: 0,
            flowing: false,
        })
    }

    /// The stream title (ICY StreamTitle), else the station name, else the URL.
    pub fn title(&self) -> String {
        let s = self.shared.lock();
        s.ok()
            .and_then(|s| s.title.clone().or_else(|| s.name.clone()))
            .unwrap_or_else(|| self.url.clone())
    }

    /// Connections made so far (reconnects show here).
    pub fn connections(&self) -> u64 {
        self.shared.lock().map(|s| s.connections).unwrap_or(0)
    }

    /// Appends decoded audio (or 10 ms of silence); returns the frames appended (never 0).
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        // Take in at most `HOLD_S` of audio: the rest waits in the channel, and the reader
        // thread blocks on it (a plain file over HTTP, or a server faster than real time, grew
        // this queue without bound: 8 -> 218 MB in 10 s).
        let most = (self.rate as f64 * HOLD_S) as usize;
        while self.queued_frames < most {
            let Ok(c) = self.rx.try_recv() else {
                break;
            };
            if c.samples.is_empty() || c.channels == 0 || c.rate == 0 {
                continue;
            }
            self.queued_frames += c.samples.len() / c.channels.max(1);
            self.queue.push_back(c);
        }
        if !self.flowing {
            let need = self.queue.front().map_or(u32::MAX as usize, |c| {
                (c.rate as f64 * PREBUFFER_S) as usize
            });
            self.flowing = self.queued_frames >= need;
        }
        if self.flowing {
            if let Some(c) = self.queue.pop_front() {
                let frames = c.samples.len() / c.channels.max(1);
                self.queued_frames -= frames;
                (self.rate, self.channels) = (c.rate, c.channels);
                out.extend_from_slice(&c.samples);
                return Ok(frames);
            }
            // Ran dry: prebuffer again.
            self.flowing = false;
        }
        let frames = (self.rate / 100).max(1) as usize;
        out.resize(out.len() + frames * self.channels, 0.0);
        Ok(frames)
    }
}

impl Drop for RadioReader {
    fn drop(&mut self) {
        self.life.stop.store(true, Ordering::SeqCst);
    }
}

/// What the reader thread works with.
struct Fetch {
    url: String,
    tx: SyncSender<Chunk>,
    shared: Arc<Mutex<Shared>>,
    /// Let the stream reach this box and link-local addresses.
    allow_local: bool,
    life: Arc<Life>,
}

/// Why a radio stream stopped (the reader reconnects after each).
#[derive(Debug, thiserror::Error)]
enum RadioError {
    #[error("{0}")]
    Http(Box<ureq::Error>),
    #[error("not a stream we can decode: {0}")]
    Format(symphonia::core::errors::Error),
    #[error("no audio track")]
    NoTrack,
    #[error("no decoder: {0}")]
    Codec(symphonia::core::errors::Error),
    #[error("stream ended: {0}")]
    Ended(symphonia::core::errors::Error),
    #[error("undecodable: {0}")]
    Undecodable(symphonia::core::errors::Error),
}

impl Fetch {
    /// The reader thread: connect, read, decode, hand over; reconnect on any failure. Ends when
    /// the source is gone.
    fn run(&self) {
        let (url, tx, life) = (&self.url, &self.tx, &self.life);
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = std::time::Instant::now();
            match self.stream_once() {
                Ok(()) => return, // the source was dropped
                Err(_) if life.stop.load(Ordering::SeqCst) => return,
                Err(e) => log::warn!("radio {url}: {e}; reconnecting in {backoff:?}"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_secs(1);
            }
            // Sleep in steps, so that a dropped source ends the thread soon.
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                if let Err(TrySendError::Disconnected(_)) = tx.try_send(Chunk {
                    samples: vec![],
                    rate: 0,
                    channels: 0,
                }) {
                    return;
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One connection: Ok when the receiver went away, Err why the stream stopped.
    fn stream_once(&self) -> Result<(), RadioError> {
        let (url, tx, shared, life) = (&self.url, &self.tx, &self.shared, &self.life);
        let resp = agent(self.allow_local)
            .get(url)
            .set("Icy-MetaData", "1")
            .set("User-Agent", concat!("chorus/", env!("CARGO_PKG_VERSION")))
            .call()
            .map_err(|e| RadioError::Http(Box::new(e)))?;
        let metaint = resp
            .header("icy-metaint")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0 && n <= 1 << 20);
        let ctype = resp
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Ok(mut s) = shared.lock() {
            s.connections += 1;
            s.name = resp.header("icy-name").map(|n| n.trim().to_string());
        }
        log::info!("radio {url}: connected ({ctype}, metadata every {metaint:?} bytes)");
        let body = IcyReader {
            inner: resp.into_reader(),
            metaint,
            until_meta: metaint.unwrap_or(0),
            shared: shared.clone(),
            life: life.clone(),
        };
        let mut hint = Hint::new();
        let ext = match ctype.as_str() {
            t if t.contains("mpeg") || t.contains("mp3") => "mp3",
            t if t.contains("aac") => "aac",
            t if t.contains("ogg") => "ogg",
            t if t.contains("flac") => "flac",
            _ => "mp3",
        };
        hint.with_extension(ext);
        let mss = MediaSourceStream::new(Box::new(ReadOnlySource::new(body)), Default::default());
        let mut probed = symphonia::default::get_probe()
            .format(
                &hint,
                mss,
                &FormatOptions::default(),
                &MetadataOptions::default(),
            )
            .map_err(RadioError::Format)?;
        let track = probed
            .format
            .default_track()
            .ok_or(RadioError::NoTrack)?
            .clone();
        let mut dec = symphonia::default::get_codecs()
            .make(&track.codec_params, &DecoderOptions::default())
            .map_err(RadioError::Codec)?;
        pump(&mut *probed.format, &mut *dec, tx)
    }
}

/// Who fetches a radio stream: 5 s to connect, 10 s without data, at most 3 redirects, and
/// every address of every hop (redirects included) checked: not this box or link-local
/// unless allowed.
fn agent(allow_local: bool) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(10))
        .redirects(3)
        .resolver(move |netloc: &str| {
            use std::net::ToSocketAddrs;
            let all: Vec<_> = netloc.to_socket_addrs()?.collect();
            let ok: Vec<_> = all
                .iter()
                .copied()
                .filter(|a| allow_local || !local(a.ip()))
                .collect();
            if ok.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{netloc} is this box or link-local ([controller] radio-allow-local)"),
                ));
            }
            Ok(ok)
        })
        .build()
}

/// Decodes packets and sends them on until the stream ends (Err why) or the receiver went
/// away (Ok).
fn pump(
    format: &mut dyn symphonia::core::formats::FormatReader,
    dec: &mut dyn symphonia::core::codecs::Decoder,
    tx: &SyncSender<Chunk>,
) -> Result<(), RadioError> {
    let mut sb: Option<SampleBuffer<f32>> = None;
    let mut bad = 0;
    loop {
        let packet = format.next_packet().map_err(RadioError::Ended)?;
        let buf = match dec.decode(&packet) {
            Ok(b) => b,
            Err(e) => {
                bad += 1;
                if bad > 64 {
                    return Err(RadioError::Undecodable(e));
                }
                continue;
            }
        };
        bad = 0;
        let spec = *buf.spec();
        let frames = buf.frames();
        if frames == 0 {
            continue;
        }
        let s = match &mut sb {
            Some(s) if s.capacity() >= buf.capacity() => s,
            slot => slot.insert(SampleBuffer::new(buf.capacity() as u64, spec)),
        };
        s.copy_interleaved_ref(buf);
        let channels = spec.channels.count();
        let chunk = Chunk {
            samples: s.samples()[..frames * channels].to_vec(),
            rate: spec.rate,
            channels,
        };
        if tx.send(chunk).is_err() {
            return Ok(()); // the source is gone
        }
    }
}

/// Loopback, unspecified or link-local (where a forged `play` should not reach).
fn local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified(),
        std::net::IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The HTTP body without its ICY metadata blocks (a length byte ×16, then
/// `StreamTitle='...';` padded with NULs, every `metaint` bytes of audio).
struct IcyReader {
    inner: Box<dyn Read + Send + Sync + 'static>,
    metaint: Option<usize>,
    until_meta: usize,
    shared: Arc<Mutex<Shared>>,
    /// Once the source was dropped every read fails, and the thread ends.
    life: Arc<Life>,
}

impl Read for IcyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.life.stop.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the source was stopped"));
        }
        let Some(metaint) = self.metaint else {
            return self.inner.read(out);
        };
        if self.until_meta == 0 {
            let mut len = [0u8; 1];
            self.inner.read_exact(&mut len)?;
            let mut meta = vec![0u8; len[0] as usize * 16];
            self.inner.read_exact(&mut meta)?;
            if let Some(t) = stream_title(&meta) {
                if let Ok(mut s) = self.shared.lock() {
                    if s.title.as_deref() != Some(t.as_str()) {
                        log::info!("radio: now playing {t:?}");
                        s.title = Some(t);
                    }
                }
            }
            self.until_meta = metaint;
        }
        let n = out.len().min(self.until_meta);
        let got = self.inner.read(&mut out[..n])?;
        self.until_meta -= got;
        Ok(got)
    }
}

/// `StreamTitle='Artist - Song';StreamUrl='...';` → `Artist - Song` (None when empty).
pub fn stream_title(meta: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(meta);
    let rest = text.split("StreamTitle='").nth(1)?;
    let title = rest.split("';").next()?.trim_matches(['\0', ' ']);
    (!title.is_empty()).then(|| title.chars().take(256).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_faster_than_real_time_is_held_back() {
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = sent.clone();
        // The reader thread: 10 ms chunks as fast as it can, for ever (a plain file over HTTP).
        std::thread::spawn(move || loop {
            let c = Chunk {
                samples: vec![0.0; 480 * 2],
                rate: 48_000,
                channels: 2,
            };
            if tx.send(c).is_err() {
                return;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut r = RadioReader {
            url: "http://radio/x".into(),
            rx,
            shared: Default::default(),
            life: Default::default(),
            rate: 48_000,
            channels: 2,
            queue: Default::default(),
            queued_frames: 0,
            flowing: false,
        };
        let mut out = vec![];
        for _ in 0..2_000 {
            out.clear();
            r.next_chunk(&mut out).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
        // 2000 chunks played; at most 5 s (500 chunks) held, 64 in the channel, one in hand.
        assert!(r.queued_frames <= 48_000 * 5 + 480, "{}", r.queued_frames);
        let n = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n <= 2_000 + 500 + 64 + 2, "{n} chunks sent");
    }

    #[test]
    fn a_slow_server_does_not_keep_a_stopped_stream_alive_and_readers_are_bounded() {
        // A server that sends its headers, then a byte every 100 ms: no packet is ever
        // decoded, so the thread never found out that its source was gone.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/slow.mp3", server.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in server.incoming() {
                let Ok(mut c) = conn else { return };
                std::thread::spawn(move || {
                    use std::io::Write;
                    let _ = c.write_all(b"HTTP/1.0 200 OK\r\ncontent-type: audio/mpeg\r\n\r\n");
                    while c.write_all(b"\0").is_ok() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
        });
        // Open until refused: never more than MAX_READERS at once (other tests may hold some).
        let mut open = vec![];
        let refused = loop {
            match RadioReader::open(&url, 48_000, 2, true) {
                Ok(r) => open.push(r),
                Err(e) => break e.to_string(),
            }
            assert!(open.len() <= MAX_READERS, "{} readers open", open.len());
        };
        assert!(refused.contains("still closing"), "{refused}");
        let t = std::time::Instant::now();
        while open.iter().any(|r| r.connections() == 0) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let lives: Vec<Arc<Life>> = open.iter().map(|r| r.life.clone()).collect();
        drop(open);
        let t = std::time::Instant::now();
        while lives.iter().any(|l| !l.ended.load(Ordering::SeqCst)) {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "reader threads still alive"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // And a new one may open again.
        assert!(RadioReader::open(&url, 48_000, 2, true).is_ok());
    }

    #[test]
    fn radio_uris() {
        assert!(is_radio("http://radio.example/stream.mp3"));
        assert!(is_radio("https://radio.example/stream"));
        assert!(!is_radio("/music/a.flac"));
        assert!(!is_radio("file:///music/a.flac"));
        assert!(!is_radio("ftp://radio.example/x"));
    }

    #[test]
    fn stream_titles_parse() {
        assert_eq!(
            stream_title(b"StreamTitle='Miles Davis - So What';StreamUrl='';\0\0"),
            Some("Miles Davis - So What".into())
        );
        assert_eq!(stream_title(b"StreamTitle='';\0\0\0"), None);
        assert_eq!(stream_title(b"\0\0\0\0"), None);
        assert_eq!(stream_title(&[0xff, 0xfe]), None);
    }

    #[test]
    fn icy_blocks_are_cut_out() {
        let meta = b"StreamTitle='A - B';";
        let mut block = vec![2u8];
        block.extend_from_slice(meta);
        block.resize(1 + 32, 0);
        let mut body = vec![1u8; 4];
        body.extend_from_slice(&block);
        body.extend_from_slice(&[2u8; 4]);
        body.push(0); // an empty block
        body.extend_from_slice(&[3u8; 2]);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut r = IcyReader {
            inner: Box::new(std::io::Cursor::new(body)),
            metaint: Some(4),
            until_meta: 4,
            shared: shared.clone(),
            life: Default::default(),
        };
        let mut audio = vec![];
        r.read_to_end(&mut audio).unwrap();
        assert_eq!(audio, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        assert_eq!(shared.lock().unwrap().title.as_deref(), Some("A - B"));
    }
}
