//! The zone streamer: one thread that owns the transport state, reads the current source and
//! sends each packet of the stream `latency` ahead of its presentation time.
//!
//! Presentation times sit on a grid (`epoch + n / rate`) so that the stream stays sample-aligned
//! across pauses, seeks and track changes. Transport changes never cut the waveform: the
//! streamer fades out over `fade-ms`, applies the change on a packet boundary, and fades in when
//! resuming mid-track. Every speaker receives the same samples, so every change takes effect on
//! the same frame everywhere.

use super::transport::{Effects, FadeChange, Transport};
use crate::audio::Item;
use crate::audio::Source;
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs, SharedClock};
use crate::wire::fec::ParityBuilder;
use crate::wire::flac_encode::FlacEncoder;
use crate::wire::packet::encode_announce;
use crate::wire::Announce;
use crate::wire::{AudioHeader, Codec, Delivery, SampleFormat};
pub(crate) use chorus_api::{ErrorEvent, Repeat, StreamInfo, TransportState, ZoneStatus};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Transport commands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Replace the queue and play it from the start.
    Play {
        uri: String,
        items: Vec<Item>,
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
        items: Vec<Item>,
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

/// Parameters of a streamer.
#[derive(Debug, Clone)]
pub(crate) struct StreamParams {
    pub zone: String,
    /// Seals every datagram (a no-op without a key).
    pub auth: crate::wire::auth::Auth,
    pub dest: SocketAddr,
    pub rate: u32,
    pub channels: u8,
    pub format: SampleFormat,
    /// How datagrams carry the frames (FLAC: 16 and 24-bit only, checked at config load).
    pub codec: Codec,
    /// Multicast (the group, and unicast to speakers that ask) or unicast only.
    pub delivery: Delivery,
    /// The speakers served by unicast (filled by the sync service), and this zone's stream
    /// as heartbeats name it (`group:port`).
    pub unicast: Arc<Mutex<super::unicast::UnicastTargets>>,
    pub stream: String,
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

/// Told when a command has taken effect and the zone's status shows it.
type Reply = tokio::sync::oneshot::Sender<()>;

/// Handle to the streamer thread.
pub(crate) struct StreamerHandle {
    tx: Mutex<Sender<(Command, Option<Reply>)>>,
    status: Arc<Mutex<ZoneStatus>>,
    /// The last datagrams sent, for repair requests.
    pub recent: Arc<Mutex<RecentDatagrams>>,
}

/// The last `RECENT` audio datagrams sent (sealed, as they went out), by sequence number: what
/// the sync service sends again when a speaker asks. About 3.6 s of 48 kHz stereo; slots are
/// allocated once and reused.
pub(crate) struct RecentDatagrams {
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
    pub(crate) fn session(&self) -> u32 {
        self.session
    }

    /// Datagram `seq` of `session`, if it is still held.
    pub(crate) fn get(&self, session: u32, seq: u32) -> Option<&[u8]> {
        if session != self.session {
            return None;
        }
        let slot = &self.slots[seq as usize % RECENT];
        (slot.0 == Some(seq)).then_some(&slot.1[..])
    }
}

impl StreamerHandle {
    /// Sends a command; the answer comes when it has taken effect (after its fade, if it
    /// fades) and the status shows it. None if the streamer is not running.
    pub(crate) fn send_then(&self, cmd: Command) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let sent = self.tx.lock().ok()?.send((cmd, Some(reply))).is_ok();
        sent.then_some(done)
    }
    /// A copy of the current status.
    pub(crate) fn status(&self) -> Option<ZoneStatus> {
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
pub(crate) fn spawn(
    params: StreamParams,
    socket: UdpSocket,
    clock: SharedClock,
    shutdown: Arc<AtomicBool>,
    events: Arc<crate::api::events::Events>,
) -> std::io::Result<Arc<StreamerHandle>> {
    let (tx, rx) = std::sync::mpsc::channel();
    // Full datagrams (7 ms of 48 kHz 16-bit stereo): each one costs every speaker a trip
    // through its network stack, whatever it carries.
    let pcm_fpp = AudioHeader::max_frames(params.channels, params.format).max(1);
    let flac = match params.codec {
        Codec::Pcm => None,
        Codec::Flac => FlacEncoder::new(params.rate, params.channels, params.format)
            .inspect_err(|e| log::error!("zone {}: {e}; sending PCM", params.zone))
            .ok(),
    };
    // FLAC: blocks as long as a speaker decodes into one buffer (10.7 ms of 48 kHz 16-bit
    // stereo), which compress to about one datagram.
    let fpp = match flac {
        Some(_) => AudioHeader::max_flac_frames(params.channels, params.format),
        None => pcm_fpp,
    };
    let status = Arc::new(Mutex::new(initial_status(&params, fpp, flac.is_some())));
    let session = rand::random::<u32>() | 1;
    let recent = Arc::new(Mutex::new(RecentDatagrams::new(session)));
    let epoch = clock.now().0;
    let fec = (params.fec_group > 0).then(|| ParityBuilder::new(params.fec_group));
    let gain = crate::dsp::volume::VolumeRamp::new(1.0, params.rate as usize * 30 / 1000);
    let fanout = super::fanout::Fanout::new(
        (params.dest, params.delivery == Delivery::Multicast),
        params.unicast.clone(),
        params.stream.clone(),
    );
    let mut s = Streamer {
        opened: 0,
        titled: None,
        fade_frames: (params.rate as u64 * params.fade_ms as u64 / 1000).max(1) as usize,
        latency_ns: params.latency_ms as i64 * 1_000_000,
        p: params,
        fpp,
        pcm_fpp,
        flac,
        clock,
        socket,
        session,
        seq: 0,
        frame_index: 0,
        epoch,
        next_slot: 0,
        t: Transport::default(),
        published_queue: u64::MAX,
        volume: 100,
        muted: false,
        gain,
        source: None,
        fade: None,
        pending: None,
        pending_reply: None,
        replies: Vec::new(),
        prefetch: None,
        status: status.clone(),
        events,
        seen: Default::default(),
        buf: Vec::new(),
        pkt: Vec::with_capacity(crate::wire::MAX_DATAGRAM),
        errors: VecDeque::new(),
        counts: Default::default(),
        fanout,
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

/// A zone's status before its streamer has sent anything.
fn initial_status(params: &StreamParams, fpp: usize, flac: bool) -> ZoneStatus {
    ZoneStatus {
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
            codec: if flac { Codec::Flac } else { Codec::Pcm },
            latency_ms: params.latency_ms,
            frames_per_packet: fpp,
        },
        session: 0,
        counts: Default::default(),
        errors: vec![],
    }
}

struct Streamer {
    p: StreamParams,
    recent: Arc<Mutex<RecentDatagrams>>,
    /// Sources opened so far, and the one whose title the status shows.
    opened: u64,
    titled: Option<u64>,
    /// Frames read per datagram, and the most a PCM datagram carries.
    fpp: usize,
    pcm_fpp: usize,
    /// The zone's FLAC encoder (codec "flac").
    flac: Option<FlacEncoder>,
    fade_frames: usize,
    latency_ns: i64,
    clock: SharedClock,
    socket: UdpSocket,
    session: u32,
    seq: u32,
    frame_index: u64,
    epoch: i64,
    next_slot: i64,
    /// The queue, the item playing, the transport state (pure: see `super::transport`).
    t: Transport,
    published_queue: u64,
    volume: u8,
    muted: bool,
    /// The zone's gain, gliding over 30 ms (unity: samples untouched).
    gain: crate::dsp::volume::VolumeRamp,
    source: Option<Source>,
    fade: Option<Fade>,
    pending: Option<Command>,
    /// Who waits for the pending command, and who is to be told at the next status.
    pending_reply: Option<Reply>,
    replies: Vec<Reply>,
    /// The next item, being opened ahead.
    prefetch: Option<super::prefetch::Prefetch>,
    status: Arc<Mutex<ZoneStatus>>,
    /// Where the zone's changes go as they are published, and what was published last.
    events: Arc<crate::api::events::Events>,
    seen: super::events::ZoneSeen,
    buf: Vec<f32>,
    pkt: Vec<u8>,
    errors: VecDeque<ErrorEvent>,
    counts: chorus_api::ZoneCounts,
    /// The datagrams of this wake-up, for the group and each speaker served by unicast, sent
    /// together at its end.
    fanout: super::fanout::Fanout,
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
impl Streamer {
    fn run(&mut self, rx: Receiver<(Command, Option<Reply>)>, shutdown: Arc<AtomicBool>) {
        loop {
            let wait = if self.t.state == TransportState::Playing {
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
                Ok((cmd, reply)) => self.command(cmd, reply),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok((cmd, reply)) = rx.try_recv() {
                self.command(cmd, reply);
            }
            if shutdown.load(Ordering::Relaxed) {
                break;
            }
            self.fanout.refresh(self.clock.now().0);
            if self.t.state == TransportState::Playing {
                self.send_due();
            }
            self.repeat_tail();
            self.announce();
            self.fanout.flush(&self.socket, &mut self.counts);
            self.publish();
            for r in self.replies.drain(..) {
                let _ = r.send(());
            }
        }
        // What the last commands queued (a stopped stream's last parity).
        self.fanout.flush(&self.socket, &mut self.counts);
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
                        if empty > self.t.queue.len() {
                            self.source = None;
                            self.t.state = TransportState::Stopped;
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
        self.t.advance();
        self.open_current();
    }

    fn publish(&mut self) {
        let Ok(mut st) = self.status.lock() else {
            return;
        };
        st.state = self.t.state;
        st.repeat = self.t.repeat;
        st.volume = self.volume;
        st.muted = self.muted;
        if st.uri != self.t.uri || self.published_queue != self.t.queue_version {
            self.published_queue = self.t.queue_version;
            st.queue = self.t.queue.iter().map(Item::to_string).collect();
            st.uri = self.t.uri.clone();
        }
        st.index = (self.t.state != TransportState::Stopped).then_some(self.t.index);
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
        let ahead = if self.t.state == TransportState::Playing {
            self.latency_ns as f64 * 1e-9
        } else {
            0.0
        };
        st.position_s = (sent - ahead).max(0.0);
        st.session = self.session;
        st.counts = self.counts;
        if st.errors.len() != self.errors.len() || st.errors.last() != self.errors.back() {
            st.errors = self.errors.iter().cloned().collect();
        }
        if self.events.listened() {
            super::events::compare_zone(&mut self.seen, &st, &self.events);
        } else {
            // Nobody listens: a new listener starts from the picture of its time.
            self.seen = Default::default();
        }
    }
}

#[path = "streamer_send.rs"]
mod send;
#[path = "streamer_transport.rs"]
mod transport;
