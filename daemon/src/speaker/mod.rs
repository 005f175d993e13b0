//! The speaker role: receives the zone's stream, keeps a model of the controller clock, and
//! plays every frame at its presentation time.

pub(crate) mod admission;
pub(crate) mod announce;
pub(crate) mod api;
mod delivery;
pub mod devclock;
pub(crate) mod floor;
pub mod jitter;
mod lead;
mod loss;
pub(crate) mod metrics;
pub mod net;
pub mod output;
pub(crate) mod plausible;
mod player;
pub mod playout;
pub(crate) mod reading;
pub(crate) mod realtime;
mod recv;
pub mod schedule;
pub(crate) mod servo;
pub(crate) mod sync_host;
pub(crate) mod tap;
pub(crate) mod timeline;

use crate::api::events::{Event, Events, SpeakerChange};
use crate::sync::{ClockModel, ClockSnapshot};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use crate::config::ZoneAddr;
pub use chorus_api::{ClockStatus, LatencyStatus, OutputInfo, PlayoutStatus, SpeakerStatus};
pub use chorus_api::{NetworkCounters, PlayoutCounters};

/// A move to another zone's stream, waiting for the playout thread: the new stream is already
/// received into its own jitter buffer, so the switch needs no gap.
pub struct Switch {
    pub rx: net::StreamReceiver,
    pub jb: jitter::JitterBuffer,
    /// When the move was asked for.
    pub asked: std::time::Instant,
}

/// What a speaker needs to open a zone's stream.
pub struct Receiving {
    pub interface: Ipv4Addr,
    pub expect: net::Expect,
    pub fixed_controller: bool,
    pub auth: crate::wire::auth::Auth,
    /// How the speaker asks for its stream, and the `auto` thresholds (shares).
    pub delivery: (crate::config::SpeakerDelivery, (f64, f64)),
}

impl Receiving {
    /// Joins `group` and listens on `port`, with a jitter buffer ready to fill.
    pub fn open(&self, group: Ipv4Addr, port: u16) -> std::io::Result<Switch> {
        Ok(Switch {
            rx: self.receiver(group, port)?,
            jb: playout::jitter_buffer(self.expect.rate, self.expect.channels as usize),
            asked: std::time::Instant::now(),
        })
    }

    /// Joins `group` and listens on `port` (and on a port of its own for unicast).
    pub fn receiver(&self, group: Ipv4Addr, port: u16) -> std::io::Result<net::StreamReceiver> {
        Ok(net::StreamReceiver::open(
            group,
            port,
            self.interface,
            self.expect,
            self.fixed_controller,
        )?
        .with_auth(self.auth.clone())
        .with_delivery(self.delivery.0, self.delivery.1))
    }
}

/// Counters and gauges, written by the network tasks and the playout thread, read by the API.
#[derive(Default, Debug)]
pub struct Stats {
    pub net: NetworkCounters,
    pub playout: PlayoutCounters,
    pub buffered_frames: AtomicU64,
    /// Last playout timing error, ns (i64::MIN: none yet).
    pub sync_error_ns: AtomicI64,
    /// Resampling ratio minus one, parts per billion.
    pub ratio_ppb: AtomicI64,
    /// The resampler is correcting drift (false: frames are copied bit-exact).
    pub resampling: AtomicBool,
    pub playing: AtomicBool,
    /// Last time (process clock, ns) the playout thread went round its loop: its pulse for the
    /// watchdog.
    pub playout_alive_ns: AtomicI64,
}

/// State shared between a speaker's tasks, its playout thread and its API.
pub struct Shared {
    pub name: String,
    /// The zone playing (or being switched to).
    pub zone: Mutex<ZoneAddr>,
    /// A move to another zone, until the playout thread takes it.
    pub switch: Mutex<Option<Switch>>,
    /// A move is under way: asked for, the new stream not playing yet.
    pub moving: AtomicBool,
    /// How to open another zone's stream (set once at start).
    pub receiving: OnceLock<Receiving>,
    pub rate: u32,
    pub volume: AtomicU8,
    pub muted: AtomicBool,
    /// Extra latency after the DAC, µs (settable at run time).
    pub extra_latency_us: AtomicI64,
    pub stats: Stats,
    pub model: Mutex<ClockModel>,
    /// Published copy of the model for the playout thread (read with `try_lock`).
    pub snapshot: Mutex<Option<ClockSnapshot>>,
    /// The clock model's verdict after its last exchange (`ClockModel::locked`), for the
    /// threads that do not take its lock. Changed only through [`Shared::set_locked`].
    pub locked: AtomicBool,
    /// Where changes are published as they happen (the event stream).
    pub events: Arc<Events>,
    pub controller: Mutex<Option<SocketAddr>>,
    pub output: Mutex<Option<OutputInfo>>,
    /// Why the output is not open (device missing, busy, unplugged), while it is not.
    pub output_problem: Mutex<Option<String>>,
    /// Times the output was (re)opened.
    pub output_opens: AtomicU64,
    /// What the playout thread's device clock knows (pointer step, stamps, rate).
    pub device_clock: Mutex<Option<devclock::DeviceStatus>>,
    /// The speaker asks for its stream by unicast (`[speaker] delivery`); the port the
    /// receiver playing takes it on; whether the stream's last new datagrams came that way.
    pub wants_unicast: AtomicBool,
    pub unicast_port: AtomicU16,
    pub by_unicast: AtomicBool,
    /// The heartbeat is to go at once (`delivery = "auto"` changed its mind).
    pub heartbeat_now: AtomicBool,
}

impl Shared {
    /// The same, publishing to `events` (the daemon's stream) instead of a stream of its own.
    pub fn with_events(mut self, events: Arc<Events>) -> Self {
        self.events = events;
        self
    }

    /// Sets the clock's verdict; a change is published (`locked`, `lost_sync`). Returns the
    /// verdict before.
    pub fn set_locked(&self, locked: bool) -> bool {
        let was = self.locked.swap(locked, Ordering::Relaxed);
        if was != locked {
            let what = if locked {
                SpeakerChange::Locked
            } else {
                SpeakerChange::LostSync
            };
            self.events.publish(Event::speaker(&self.name, what));
        }
        was
    }

    /// Sets the volume and mute (each when given); a change is published.
    pub fn set_volume(&self, volume: Option<u8>, muted: Option<bool>) {
        let v0 = volume.map_or(self.volume.load(Ordering::Relaxed), |v| {
            self.volume.swap(v, Ordering::Relaxed)
        });
        let m0 = muted.map_or(self.muted.load(Ordering::Relaxed), |m| {
            self.muted.swap(m, Ordering::Relaxed)
        });
        let now = (
            self.volume.load(Ordering::Relaxed),
            self.muted.load(Ordering::Relaxed),
        );
        if now != (v0, m0) {
            self.events.publish(Event::SpeakerVolume {
                speaker: self.name.clone(),
                volume: now.0,
                muted: now.1,
            });
        }
    }

    pub fn new(name: String, zone: ZoneAddr, rate: u32, volume: u8, extra_latency_ms: f64) -> Self {
        let stats = Stats::default();
        stats.sync_error_ns.store(i64::MIN, Ordering::Relaxed);
        Shared {
            name,
            zone: Mutex::new(zone),
            switch: Mutex::new(None),
            moving: AtomicBool::new(false),
            receiving: OnceLock::new(),
            rate,
            volume: AtomicU8::new(volume),
            muted: AtomicBool::new(false),
            extra_latency_us: AtomicI64::new((extra_latency_ms * 1000.0) as i64),
            stats,
            model: Mutex::new(ClockModel::new(Default::default())),
            snapshot: Mutex::new(None),
            locked: AtomicBool::new(false),
            events: Arc::new(Events::default()),
            controller: Mutex::new(None),
            output: Mutex::new(None),
            output_problem: Mutex::new(None),
            output_opens: AtomicU64::new(0),
            device_clock: Mutex::new(None),
            wants_unicast: AtomicBool::new(false),
            unicast_port: AtomicU16::new(0),
            by_unicast: AtomicBool::new(false),
            heartbeat_now: AtomicBool::new(false),
        }
    }

    /// The zone playing (or being switched to).
    pub fn zone(&self) -> ZoneAddr {
        match self.zone.lock() {
            Ok(z) => z.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Last playout error in µs, if playing has started.
    pub fn sync_error_us(&self) -> Option<f64> {
        let v = self.stats.sync_error_ns.load(Ordering::Relaxed);
        (v != i64::MIN).then(|| v as f64 / 1000.0)
    }

    /// Everything the API reports.
    pub fn status(&self) -> SpeakerStatus {
        let s = &self.stats;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (clock, locked) = match self.model.lock() {
            Ok(m) => (
                m.snapshot().map(|snap| ClockStatus {
                    offset_ns: snap.offset_ref,
                    freq_ppm: snap.freq * 1e6,
                    rtt_us: m.last_rtt() as f64 / 1000.0,
                    min_rtt_us: m.min_rtt() as f64 / 1000.0,
                    est_error_us: m.est_error() as f64 / 1000.0,
                    steps: m.steps(),
                }),
                self.locked.load(Ordering::Relaxed),
            ),
            Err(_) => (None, false),
        };
        let output = self.output.lock().ok().and_then(|o| o.clone());
        let extra_ms = self.extra_latency_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let device_ms = output
            .as_ref()
            .map(|o| o.buffer_frames as f64 * 1000.0 / o.rate as f64);
        let zone = self.zone();
        SpeakerStatus {
            name: self.name.clone(),
            stream: zone.stream(),
            zone: zone.name,
            switching: self.moving.load(Ordering::Relaxed),
            controller: self
                .controller
                .lock()
                .ok()
                .and_then(|c| c.map(|a| a.to_string())),
            delivery: if self.by_unicast.load(Ordering::Relaxed) {
                chorus_api::Delivery::Unicast
            } else {
                chorus_api::Delivery::Multicast
            },
            volume: self.volume.load(Ordering::Relaxed),
            muted: self.muted.load(Ordering::Relaxed),
            locked,
            clock,
            output,
            output_problem: self.output_problem.lock().ok().and_then(|p| p.clone()),
            output_opens: self.output_opens.load(Ordering::Relaxed),
            latency: LatencyStatus {
                device_buffer_ms: device_ms,
                extra_ms,
            },
            playout: PlayoutStatus {
                playing: s.playing.load(Ordering::Relaxed),
                sync_error_us: self.sync_error_us(),
                buffered_ms: ld(&s.buffered_frames) as f64 * 1000.0 / self.rate as f64,
                counts: s.playout.snapshot(),
                resampling: s.resampling.load(Ordering::Relaxed),
                ratio_ppm: s.ratio_ppb.load(Ordering::Relaxed) as f64 / 1000.0,
                device: self.device_clock.lock().ok().and_then(|d| *d),
            },
            network: s.net.snapshot(),
        }
    }
}
