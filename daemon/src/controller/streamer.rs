//! The zone streamer: one thread that owns the transport state, reads the current source and
//! sends each packet of the stream `latency` ahead of its presentation time.
//!
//! Presentation times sit on a grid (`epoch + n / rate`) so that the stream stays sample-aligned
//! across pauses, seeks and track changes. Transport changes never cut the waveform: the
//! streamer fades out over `fade-ms`, applies the change on a packet boundary, and fades in when
//! resuming mid-track. Every speaker receives the same samples, so every change takes effect on
//! the same frame everywhere.

use crate::audio::Source;
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs, SharedClock};
use crate::net::{SendBatch, SendError};
use crate::wire::fec::ParityBuilder;
use crate::wire::packet::{encode_announce, encode_audio};
use crate::wire::Announce;
use crate::wire::{AudioHeader, SampleFormat};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Transport commands.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Replace the queue and play it from the start.
    Play {
        uri: String,
        items: Vec<PathBuf>,
    },
    Pause,
    Resume,
    Stop,
    Next,
    Previous,
    /// Seek within the current item, seconds.
    Seek(f64),
    /// Queue editing. Positions are 0-based; the API checks them against the queue it sees,
    /// and the streamer clamps them (the queue may have moved on meanwhile).
    Add {
        /// None: at the end.
        at: Option<usize>,
        items: Vec<PathBuf>,
    },
    Remove(usize),
    Move {
        from: usize,
        to: usize,
    },
    Clear,
    /// Shuffles the queue; the item playing stays playing and becomes the first.
    Shuffle,
    SetRepeat(Repeat),
    /// Zone volume (0..=100, scales every speaker of the zone) and mute, gliding.
    ZoneVolume(u8),
    ZoneMute(bool),
}

/// What happens at the end of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Repeat {
    /// Play the queue once.
    #[default]
    Off,
    /// Start the queue over after its last item.
    All,
    /// Play the current item again and again.
    One,
}

/// Transport state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportState {
    Stopped,
    Playing,
    Paused,
}

/// A reported problem (undecodable file, failed seek, ...).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorEvent {
    /// Controller clock, ms.
    pub at_ms: i64,
    pub item: String,
    pub message: String,
}

/// What the API shows about the zone.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZoneStatus {
    pub zone: String,
    pub state: TransportState,
    pub uri: Option<String>,
    pub queue: Vec<String>,
    pub index: Option<usize>,
    pub repeat: Repeat,
    /// Zone volume 0..=100 and mute (applied to the stream: every speaker follows).
    pub volume: u8,
    pub muted: bool,
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
    /// Position heard by the speakers, seconds.
    pub position_s: f64,
    pub duration_s: Option<f64>,
    pub stream: StreamInfo,
    pub session: u32,
    pub frames_sent: u64,
    pub packets_sent: u64,
    /// Parity datagrams sent (forward error correction).
    pub parity_sent: u64,
    pub send_errors: u64,
    /// Last errors, oldest first.
    pub errors: Vec<ErrorEvent>,
}

/// The zone's stream format.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamInfo {
    pub group: String,
    pub rate: u32,
    pub channels: u8,
    pub sample_format: SampleFormat,
    pub latency_ms: u32,
    pub frames_per_packet: usize,
}

/// Parameters of a streamer.
#[derive(Debug, Clone)]
pub struct StreamParams {
    pub zone: String,
    /// Seals every datagram (a no-op without a key).
    pub auth: crate::wire::auth::Auth,
    pub dest: SocketAddr,
    pub rate: u32,
    pub channels: u8,
    pub format: SampleFormat,
    pub latency_ms: u32,
    pub fade_ms: u32,
    /// Parity after every this many audio datagrams; 0: none.
    pub fec_group: usize,
    /// Formats of raw PCM from FIFO and capture items.
    pub raw_formats: crate::audio::source::RawFormats,
    /// Announced so that speakers find the sync service.
    pub sync_port: u16,
}

const MAX_ERRORS: usize = 32;

/// Handle to the streamer thread.
pub struct StreamerHandle {
    tx: Mutex<Sender<Command>>,
    status: Arc<Mutex<ZoneStatus>>,
    /// The last datagrams sent, for repair requests.
    pub recent: Arc<Mutex<RecentDatagrams>>,
}

/// The last `RECENT` audio datagrams sent (sealed, as they went out), by sequence number: what
/// the sync service sends again when a speaker asks. About 3.6 s of 48 kHz stereo; slots are
/// allocated once and reused.
pub struct RecentDatagrams {
    session: u32,
    slots: Vec<(Option<u32>, Vec<u8>)>,
}

const RECENT: usize = 512;

impl RecentDatagrams {
    fn new(session: u32) -> Self {
        RecentDatagrams {
            session,
            slots: (0..RECENT)
                .map(|_| (None, Vec::with_capacity(crate::wire::MAX_DATAGRAM)))
                .collect(),
        }
    }

    fn store(&mut self, seq: u32, datagram: &[u8]) {
        let slot = &mut self.slots[seq as usize % RECENT];
        slot.0 = Some(seq);
        slot.1.clear();
        slot.1.extend_from_slice(datagram);
    }

    /// The session whose datagrams these are.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Datagram `seq` of `session`, if it is still held.
    pub fn get(&self, session: u32, seq: u32) -> Option<&[u8]> {
        if session != self.session {
            return None;
        }
        let slot = &self.slots[seq as usize % RECENT];
        (slot.0 == Some(seq)).then_some(&slot.1[..])
    }
}

impl StreamerHandle {
    /// Sends a command to the streamer.
    pub fn send(&self, cmd: Command) -> bool {
        self.tx
            .lock()
            .map(|tx| tx.send(cmd).is_ok())
            .unwrap_or(false)
    }
    /// A copy of the current status.
    pub fn status(&self) -> Option<ZoneStatus> {
        self.status.lock().ok().map(|s| s.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FadeDir {
    In,
    Out,
}

#[derive(Debug, Clone, Copy)]
struct Fade {
    dir: FadeDir,
    done: usize,
    total: usize,
}

impl Fade {
    /// Gain of the next frame (raised-cosine ramp).
    fn gain(&self, i: usize) -> f32 {
        let up = crate::dsp::fade::rising(self.done + i, self.total);
        match self.dir {
            FadeDir::In => up,
            FadeDir::Out => 1.0 - up,
        }
    }
    fn remaining(&self) -> usize {
        self.total - self.done
    }
}

/// Starts the streamer thread.
pub fn spawn(
    params: StreamParams,
    socket: UdpSocket,
    clock: SharedClock,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<Arc<StreamerHandle>> {
    let (tx, rx) = std::sync::mpsc::channel();
    // Full datagrams (7 ms of 48 kHz 16-bit stereo): each one costs every speaker a trip
    // through its network stack, whatever it carries.
    let fpp = AudioHeader::max_frames(params.channels, params.format).max(1);
    let status = Arc::new(Mutex::new(ZoneStatus {
        zone: params.zone.clone(),
        state: TransportState::Stopped,
        uri: None,
        queue: vec![],
        index: None,
        repeat: Repeat::Off,
        volume: 100,
        muted: false,
        title: None,
        artist: None,
        album: None,
        position_s: 0.0,
        duration_s: None,
        stream: StreamInfo {
            group: params.dest.to_string(),
            rate: params.rate,
            channels: params.channels,
            sample_format: params.format,
            latency_ms: params.latency_ms,
            frames_per_packet: fpp,
        },
        session: 0,
        frames_sent: 0,
        packets_sent: 0,
        parity_sent: 0,
        send_errors: 0,
        errors: vec![],
    }));
    let session = rand::random::<u32>() | 1;
    let recent = Arc::new(Mutex::new(RecentDatagrams::new(session)));
    let epoch = clock.now().0;
    let fec = (params.fec_group > 0).then(|| ParityBuilder::new(params.fec_group));
    let gain = crate::dsp::volume::VolumeRamp::new(1.0, params.rate as usize * 30 / 1000);
    let mut s = Streamer {
        opened: 0,
        titled: None,
        fade_frames: (params.rate as u64 * params.fade_ms as u64 / 1000).max(1) as usize,
        latency_ns: params.latency_ms as i64 * 1_000_000,
        p: params,
        fpp,
        clock,
        socket,
        session,
        seq: 0,
        frame_index: 0,
        epoch,
        next_slot: 0,
        state: TransportState::Stopped,
        uri: None,
        queue: vec![],
        queue_version: 0,
        published_queue: u64::MAX,
        repeat: Repeat::Off,
        volume: 100,
        muted: false,
        gain,
        index: 0,
        source: None,
        fade: None,
        pending: None,
        status: status.clone(),
        buf: Vec::new(),
        pkt: Vec::with_capacity(crate::wire::MAX_DATAGRAM),
        errors: VecDeque::new(),
        frames_sent: 0,
        packets_sent: 0,
        parity_sent: 0,
        send_errors: 0,
        batch: SendBatch::new(true),
        fec,
        fec_pkt: Vec::with_capacity(crate::wire::MAX_DATAGRAM),
        last_announce: i64::MIN / 2,
        tail: None,
        recent: recent.clone(),
    };
    std::thread::Builder::new()
        .name("chorus-streamer".into())
        .spawn(move || s.run(rx, shutdown))?;
    Ok(Arc::new(StreamerHandle {
        tx: Mutex::new(tx),
        status,
        recent,
    }))
}

struct Streamer {
    p: StreamParams,
    recent: Arc<Mutex<RecentDatagrams>>,
    /// Sources opened so far, and the one whose title the status shows.
    opened: u64,
    titled: Option<u64>,
    fpp: usize,
    fade_frames: usize,
    latency_ns: i64,
    clock: SharedClock,
    socket: UdpSocket,
    session: u32,
    seq: u32,
    frame_index: u64,
    epoch: i64,
    next_slot: i64,
    state: TransportState,
    uri: Option<String>,
    queue: Vec<PathBuf>,
    /// Changes with every edit of the queue (the status copies it only then).
    queue_version: u64,
    published_queue: u64,
    repeat: Repeat,
    volume: u8,
    muted: bool,
    /// The zone's gain, gliding over 30 ms (unity: samples untouched).
    gain: crate::dsp::volume::VolumeRamp,
    index: usize,
    source: Option<Source>,
    fade: Option<Fade>,
    pending: Option<Command>,
    status: Arc<Mutex<ZoneStatus>>,
    buf: Vec<f32>,
    pkt: Vec<u8>,
    errors: VecDeque<ErrorEvent>,
    frames_sent: u64,
    packets_sent: u64,
    parity_sent: u64,
    send_errors: u64,
    /// The datagrams of this wake-up, sent together at its end.
    batch: SendBatch,
    /// Parity of the group being sent, and the buffer its datagram is built in.
    fec: Option<ParityBuilder>,
    fec_pkt: Vec<u8>,
    last_announce: i64,
    /// After the stream stops: the last datagram's sequence number, when to send it again,
    /// and how many times more.
    tail: Option<(u32, i64, u8)>,
}

/// Interval of the announce beacon.
const ANNOUNCE_NS: i64 = 500_000_000;
/// Packets go out in bursts covering this much audio (three 7 ms packets at 48 kHz/16-bit):
/// every speaker then finds a burst waiting at each of its wake-ups, for audio that is still
/// sent a whole latency ahead of its time.
const BURST_NS: i64 = 20_000_000;

/// Datagrams at the end of a stream sent again (4: 27 ms of 48 kHz 16-bit stereo, more than a
/// typical Wi-Fi loss burst).
const TAIL_REPEAT: u32 = 4;

/// Silence sent after the last frame of the queue, ms.
const END_SILENCE_MS: usize = 5;

/// Counts the datagrams a send lost; logs the first failure and then at each power of two.
fn count_send(errors: &mut u64, dest: SocketAddr, sent: Result<(), SendError>) {
    let Err(SendError { error, lost }) = sent else {
        return;
    };
    let before = *errors;
    *errors += lost as u64;
    if (before + 1..=*errors).any(u64::is_power_of_two) {
        log::warn!("multicast send to {dest} failed ({errors} datagrams): {error}");
    }
}

impl Streamer {
    fn run(&mut self, rx: Receiver<Command>, shutdown: Arc<AtomicBool>) {
        loop {
            let wait = if self.state == TransportState::Playing {
                // Until the next packet's latest send time; `send_due` then sends everything
                // up to a burst beyond it, so the thread wakes once per burst.
                let due = self.pts(self.next_slot).0 - self.latency_ns - self.clock.now().0;
                Duration::from_nanos(due.clamp(0, 50_000_000) as u64)
            } else {
                // Until the stream's tail is sent again, if it is to be.
                let until_tail = self
                    .tail
                    .map_or(50_000_000, |(_, due, _)| due - self.clock.now().0);
                Duration::from_nanos(until_tail.clamp(0, 50_000_000) as u64)
            };
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.command(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(cmd) = rx.try_recv() {
                self.command(cmd);
            }
            if shutdown.load(Ordering::Relaxed) {
                break;
            }
            if self.state == TransportState::Playing {
                self.send_due();
            }
            self.repeat_tail();
            self.announce();
            let sent = self.batch.flush(&self.socket, self.p.dest);
            count_send(&mut self.send_errors, self.p.dest, sent);
            self.publish();
        }
        // What the last commands queued (a stopped stream's last parity).
        let sent = self.batch.flush(&self.socket, self.p.dest);
        count_send(&mut self.send_errors, self.p.dest, sent);
    }

    fn pts(&self, slot: i64) -> ControllerNs {
        ControllerNs(self.epoch + frames_to_ns(slot, self.p.rate))
    }

    /// The first grid slot that can still reach the speakers in time.
    fn slot_now(&self) -> i64 {
        let t = self.clock.now().0 + self.latency_ns - self.epoch;
        ns_to_frames(t, self.p.rate) + 1
    }

    fn record_error(&mut self, item: String, message: String) {
        log::warn!("{message}");
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEvent {
            at_ms: self.clock.now().0 / 1_000_000,
            item,
            message,
        });
    }

    fn command(&mut self, cmd: Command) {
        log::info!("transport: {cmd:?}");
        let touches_current = match &cmd {
            Command::Resume
            | Command::Add { .. }
            | Command::Move { .. }
            | Command::Shuffle
            | Command::SetRepeat(_)
            | Command::ZoneVolume(_)
            | Command::ZoneMute(_) => false,
            Command::Remove(at) => *at == self.index,
            _ => true,
        };
        let needs_fade =
            self.state == TransportState::Playing && self.source.is_some() && touches_current;
        if needs_fade {
            // Fade out from the next frame on; the command takes effect when the fade ends.
            let done = match self.fade {
                // Already fading out: keep going from where it is.
                Some(Fade {
                    dir: FadeDir::Out,
                    done,
                    ..
                }) => done,
                // Fading in: start the fade-out at the same gain.
                Some(
                    f @ Fade {
                        dir: FadeDir::In, ..
                    },
                ) => f.remaining(),
                None => 0,
            };
            self.fade = Some(Fade {
                dir: FadeDir::Out,
                done,
                total: self.fade_frames,
            });
            self.pending = Some(cmd);
        } else {
            self.apply(cmd);
        }
    }

    fn apply(&mut self, cmd: Command) {
        let was_playing = self.state == TransportState::Playing;
        match cmd {
            Command::Play { uri, items } => {
                self.uri = Some(uri);
                self.queue = items;
                self.queue_version += 1;
                self.index = 0;
                self.source = None;
                self.fade = None;
                if !was_playing {
                    self.next_slot = self.slot_now();
                }
                self.state = TransportState::Playing;
                self.open_current();
            }
            Command::Pause => {
                if self.state == TransportState::Playing {
                    self.state = TransportState::Paused;
                }
                self.fade = None;
            }
            Command::Resume => match self.state {
                TransportState::Paused => {
                    self.state = TransportState::Playing;
                    self.next_slot = self.slot_now();
                    self.fade = Some(Fade {
                        dir: FadeDir::In,
                        done: 0,
                        total: self.fade_frames,
                    });
                }
                TransportState::Stopped if !self.queue.is_empty() => {
                    self.state = TransportState::Playing;
                    self.next_slot = self.slot_now();
                    if self.source.is_none() {
                        self.open_current();
                    }
                }
                _ => {}
            },
            Command::Stop => {
                self.state = TransportState::Stopped;
                self.source = None;
                self.index = 0;
                self.fade = None;
            }
            Command::Next => {
                self.fade = None;
                self.index += 1;
                if self.repeat != Repeat::Off && self.index >= self.queue.len() {
                    self.index = 0;
                }
                self.open_current();
            }
            cmd @ (Command::Add { .. }
            | Command::Remove(_)
            | Command::Move { .. }
            | Command::Clear
            | Command::Shuffle) => self.edit_queue(cmd),
            Command::SetRepeat(r) => self.repeat = r,
            Command::ZoneVolume(v) => self.volume = v.min(100),
            Command::ZoneMute(m) => self.muted = m,
            Command::Previous => {
                self.fade = None;
                let restart = self
                    .source
                    .as_ref()
                    .map(|s| s.position_s() > 3.0)
                    .unwrap_or(false);
                if !restart {
                    self.index = self.index.saturating_sub(1);
                }
                self.open_current();
            }
            Command::Seek(secs) => {
                let result = match &mut self.source {
                    Some(s) => s.seek(secs).map_err(|e| e.to_string()),
                    None => Err("nothing is playing".to_string()),
                };
                if let Err(e) = result {
                    let item = self.current_name();
                    self.record_error(item, format!("seek to {secs:.3} s failed: {e}"));
                }
                if self.state == TransportState::Playing {
                    self.fade = Some(Fade {
                        dir: FadeDir::In,
                        done: 0,
                        total: self.fade_frames,
                    });
                } else {
                    self.fade = None;
                }
            }
        }
    }

    /// Queue edits; the item playing stays the one playing (or, removed, the next takes its
    /// place).
    fn edit_queue(&mut self, cmd: Command) {
        match cmd {
            Command::Add { at, items } => {
                let at = at.unwrap_or(self.queue.len()).min(self.queue.len());
                let n = items.len();
                self.queue.splice(at..at, items);
                // The item playing stays the one playing.
                if at <= self.index && self.source.is_some() {
                    self.index += n;
                }
                self.queue_version += 1;
            }
            Command::Remove(at) if at < self.queue.len() => {
                self.queue.remove(at);
                self.queue_version += 1;
                if at < self.index {
                    self.index -= 1;
                } else if at == self.index && self.source.is_some() {
                    // The item playing went: the next one takes its place (after the fade).
                    self.fade = None;
                    if self.repeat == Repeat::All && self.index >= self.queue.len() {
                        self.index = 0;
                    }
                    self.open_current();
                }
            }
            Command::Move { from, to } if from < self.queue.len() && to < self.queue.len() => {
                let item = self.queue.remove(from);
                self.queue.insert(to, item);
                self.queue_version += 1;
                if self.source.is_some() {
                    self.index = index_after_move(self.index, from, to);
                }
            }
            Command::Clear => {
                self.queue.clear();
                self.queue_version += 1;
                self.state = TransportState::Stopped;
                self.source = None;
                self.index = 0;
                self.fade = None;
            }
            Command::Shuffle => {
                use rand::seq::SliceRandom;
                if self.source.is_some() && self.index < self.queue.len() {
                    let current = self.queue.remove(self.index);
                    self.queue.shuffle(&mut rand::thread_rng());
                    self.queue.insert(0, current);
                    self.index = 0;
                } else {
                    self.queue.shuffle(&mut rand::thread_rng());
                }
                self.queue_version += 1;
            }
            _ => {}
        }
    }

    fn current_name(&self) -> String {
        self.queue
            .get(self.index)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Opens the item at `index`, skipping (and reporting) items that cannot be played. Stops at
    /// the end of the queue.
    fn open_current(&mut self) {
        self.source = None;
        while self.index < self.queue.len() {
            let path = self.queue[self.index].clone();
            match Source::open_with(
                &path,
                self.p.rate,
                self.p.channels as usize,
                self.p.raw_formats,
            ) {
                Ok(s) => {
                    let (r, c) = s.source_format();
                    log::info!("playing {} ({} Hz, {} ch)", path.display(), r, c);
                    self.source = Some(s);
                    self.opened += 1;
                    return;
                }
                Err(e) => {
                    self.record_error(path.display().to_string(), e.to_string());
                    self.index += 1;
                }
            }
        }
        self.state = TransportState::Stopped;
        self.index = 0;
    }

    /// Reads up to `n` frames, moving on to the next item at the end of one (gapless).
    fn read_frames(&mut self, n: usize) -> usize {
        let mut got = 0;
        // Items that ended without giving a frame, in a row: with repeat on, a queue of
        // nothing but such items would go round for ever.
        let mut empty = 0;
        while got < n {
            let Some(src) = &mut self.source else { break };
            let want = n - got;
            match src.read(want, &mut self.buf) {
                Ok(k) => {
                    got += k;
                    if k < want {
                        empty = if k == 0 { empty + 1 } else { 0 };
                        if empty > self.queue.len() {
                            self.source = None;
                            self.state = TransportState::Stopped;
                            break;
                        }
                        self.advance();
                    }
                }
                Err(e) => {
                    let (item, msg) = (src.path().display().to_string(), e.to_string());
                    // Frames the source returned before failing stay in the buffer.
                    got = self.buf.len() / self.p.channels as usize;
                    self.record_error(item, msg);
                    self.advance();
                }
            }
        }
        got
    }

    /// The item playing ended: the next one (or the same one, or the first, by `repeat`).
    fn advance(&mut self) {
        match self.repeat {
            Repeat::One => {}
            Repeat::All if self.index + 1 >= self.queue.len() => self.index = 0,
            _ => self.index += 1,
        }
        self.open_current();
    }

    fn send_due(&mut self) {
        let now = self.clock.now().0;
        // After a stall (or a long pause in the loop) skip ahead rather than send stale audio.
        if self.pts(self.next_slot).0 - self.latency_ns < now - self.latency_ns / 2 {
            log::warn!("streamer fell behind; skipping ahead");
            self.next_slot = self.slot_now();
        }
        while self.state == TransportState::Playing {
            let pts = self.pts(self.next_slot);
            if pts.0 - self.latency_ns > now + BURST_NS {
                break;
            }
            let mut n = self.fpp;
            if let Some(f) = self.fade {
                if f.dir == FadeDir::Out {
                    n = n.min(f.remaining());
                }
            }
            self.buf.clear();
            let got = if n > 0 { self.read_frames(n) } else { 0 };
            self.apply_fade(got);
            if got > 0 {
                self.send_packet(pts, got);
            }
            if let Some(f) = self.fade {
                if f.remaining() == 0 {
                    self.fade = None;
                    if f.dir == FadeDir::Out {
                        if let Some(cmd) = self.pending.take() {
                            self.apply(cmd);
                        }
                    }
                }
            }
            if self.pending.is_none() && self.source.is_none() {
                // End of the queue (reading past the last item stopped the transport): a
                // little silence after the last frame, so that the stream ends in silence. A
                // speaker fades out wherever its stream stops (a controller that dies must not
                // click); on this tail the fade changes nothing.
                let tail = (self.p.rate as usize * END_SILENCE_MS / 1000).min(self.fpp);
                self.buf.clear();
                self.buf.resize(tail * self.p.channels as usize, 0.0);
                self.send_packet(self.pts(self.next_slot), tail);
                self.state = TransportState::Stopped;
            }
        }
        if self.state != TransportState::Playing {
            // The stream stops here: protect the last, partial group too.
            self.send_parity();
            // Nothing follows the last datagrams to show a speaker that they went missing
            // (a loss burst at the very end): send the last few again twice, a quarter and
            // half the latency later: what a burst took is back at once, and a longer gap
            // shows while there is time to repair it. A speaker that has them drops the copies
            // as duplicates.
            let first = self.clock.now().0 + self.tail_step();
            self.tail = Some((self.seq.wrapping_sub(1), first, 2));
        }
    }

    /// Sends the stream's last datagram again, when due (see `send_due`).
    fn repeat_tail(&mut self) {
        let Some((seq, due, left)) = self.tail else {
            return;
        };
        if self.state == TransportState::Playing {
            self.tail = None;
            return;
        }
        if self.clock.now().0 < due {
            return;
        }
        if let Ok(r) = self.recent.lock() {
            for s in (0..TAIL_REPEAT).rev().map(|back| seq.wrapping_sub(back)) {
                if let Some(d) = r.get(self.session, s) {
                    let sent = self.batch.push(&self.socket, self.p.dest, d);
                    count_send(&mut self.send_errors, self.p.dest, sent);
                }
            }
        }
        self.tail = (left > 1).then_some((seq, due + self.tail_step(), left - 1));
    }

    /// Time between the sends of a stream's tail: a quarter of the latency (5 ms at least).
    fn tail_step(&self) -> i64 {
        (self.latency_ns / 4).max(5_000_000)
    }

    /// Sends the parity of the datagrams added to the group since the last one, if any.
    fn send_parity(&mut self) {
        let Some(fec) = &mut self.fec else { return };
        if !fec.finish(&mut self.fec_pkt) {
            return;
        }
        self.p.auth.seal(&mut self.fec_pkt);
        let sent = self.batch.push(&self.socket, self.p.dest, &self.fec_pkt);
        count_send(&mut self.send_errors, self.p.dest, sent);
        self.parity_sent += 1;
    }

    fn apply_fade(&mut self, frames: usize) {
        let Some(f) = &mut self.fade else { return };
        let ch = self.p.channels as usize;
        let n = frames.min(f.remaining());
        for i in 0..n {
            let g = f.gain(i);
            for s in &mut self.buf[i * ch..(i + 1) * ch] {
                *s *= g;
            }
        }
        if f.dir == FadeDir::Out && frames > n {
            self.buf[n * ch..frames * ch].fill(0.0);
        }
        f.done += n;
        if frames < n || (f.dir == FadeDir::Out && frames == 0) {
            // Source ended inside the fade: nothing left to fade.
            f.done = f.total;
        }
    }

    fn send_packet(&mut self, pts: ControllerNs, frames: usize) {
        let target = crate::dsp::volume::gain_for(self.volume, self.muted);
        let ch = self.p.channels as usize;
        self.gain.apply(target, &mut self.buf[..frames * ch], ch);
        let h = AudioHeader {
            session: self.session,
            seq: self.seq,
            frame_index: self.frame_index,
            pts,
            rate: self.p.rate,
            channels: self.p.channels,
            format: self.p.format,
            frames: frames as u16,
        };
        encode_audio(
            &h,
            &self.buf[..frames * self.p.channels as usize],
            &mut self.pkt,
        );
        self.p.auth.seal(&mut self.pkt);
        if let Ok(mut r) = self.recent.lock() {
            r.store(self.seq, &self.pkt);
        }
        let sent = self.batch.push(&self.socket, self.p.dest, &self.pkt);
        count_send(&mut self.send_errors, self.p.dest, sent);
        let complete = self
            .fec
            .as_mut()
            .is_some_and(|f| f.add(self.session, self.seq, &self.pkt));
        if complete {
            self.send_parity();
        }
        self.seq = self.seq.wrapping_add(1);
        self.frame_index += frames as u64;
        self.next_slot += frames as i64;
        self.frames_sent += frames as u64;
        self.packets_sent += 1;
    }

    fn announce(&mut self) {
        let now = self.clock.now().0;
        if now - self.last_announce < ANNOUNCE_NS {
            return;
        }
        self.last_announce = now;
        let a = Announce {
            session: self.session,
            sync_port: self.p.sync_port,
            sent_ns: now,
        };
        let mut d = encode_announce(&a);
        self.p.auth.seal(&mut d);
        let sent = self.batch.push(&self.socket, self.p.dest, &d);
        count_send(&mut self.send_errors, self.p.dest, sent);
    }

    fn publish(&mut self) {
        let Ok(mut st) = self.status.lock() else {
            return;
        };
        st.state = self.state;
        st.repeat = self.repeat;
        st.volume = self.volume;
        st.muted = self.muted;
        if st.uri != self.uri || self.published_queue != self.queue_version {
            self.published_queue = self.queue_version;
            st.queue = self.queue.iter().map(|p| p.display().to_string()).collect();
            st.uri = self.uri.clone();
        }
        st.index = (self.state != TransportState::Stopped).then_some(self.index);
        // The title is built from tags or the file name: only when the track changed.
        let track = self.source.is_some().then_some(self.opened);
        let live = self.source.as_ref().is_some_and(|s| s.live_title());
        if track != self.titled || live {
            self.titled = track;
            st.title = self.source.as_ref().map(|s| s.title());
            (st.artist, st.album) = self
                .source
                .as_ref()
                .map(|s| s.artist_album())
                .unwrap_or_default();
        }
        st.duration_s = self.source.as_ref().and_then(|s| s.duration_s());
        let sent = self.source.as_ref().map(|s| s.position_s()).unwrap_or(0.0);
        let ahead = if self.state == TransportState::Playing {
            self.latency_ns as f64 * 1e-9
        } else {
            0.0
        };
        st.position_s = (sent - ahead).max(0.0);
        st.session = self.session;
        st.frames_sent = self.frames_sent;
        st.packets_sent = self.packets_sent;
        st.parity_sent = self.parity_sent;
        st.send_errors = self.send_errors;
        if st.errors.len() != self.errors.len() || st.errors.last() != self.errors.back() {
            st.errors = self.errors.iter().cloned().collect();
        }
    }
}

/// Where the item at `index` is after the item at `from` moved to `to`.
fn index_after_move(index: usize, from: usize, to: usize) -> usize {
    if from == index {
        to
    } else if from < index && to >= index {
        index - 1
    } else if from > index && to <= index {
        index + 1
    } else {
        index
    }
}

#[cfg(test)]
mod tests {
    use super::index_after_move;

    #[test]
    fn the_item_playing_stays_the_one_playing_when_another_moves() {
        // Queue a b c d e, c (2) playing.
        assert_eq!(index_after_move(2, 2, 4), 4); // c itself moves to the end
        assert_eq!(index_after_move(2, 0, 3), 1); // a moves after c
        assert_eq!(index_after_move(2, 4, 0), 3); // e moves before c
        assert_eq!(index_after_move(2, 3, 4), 2); // d and e swap behind it
        assert_eq!(index_after_move(2, 0, 1), 2); // a and b swap before it
        assert_eq!(index_after_move(2, 4, 2), 3); // e into c's place: c after it
        assert_eq!(index_after_move(2, 0, 2), 1); // a into c's place: c before it
    }
}
