//! The playout thread allocates and frees nothing per packet once it runs: a counting global
//! allocator watches that one thread while real multicast datagrams stream through its socket
//! (recvmmsg, parse, decode; PCM, then FLAC), the jitter buffer, the scheduler, the resampler (a DAC 300 ppm off
//! keeps it engaged) and the simulated DAC.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus::clock::{ControllerNs, LocalNs, MonotonicRaw, SharedClock};
use chorus::speaker::net::{Expect, StreamReceiver};
use chorus::speaker::output::sim::{SimDac, SimParams};
use chorus::speaker::output::Output;
use chorus::speaker::{playout, Shared};
use chorus::sync::ClockSnapshot;
use chorus::wire::flac_encode::FlacEncoder;
use chorus::wire::packet::{encode_audio, put_audio_header};
use chorus::wire::{AudioHeader, Codec, SampleFormat};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static WATCHED_TID: AtomicI64 = AtomicI64::new(-1);
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);

struct Counting;

impl Counting {
    fn note(&self, counter: &AtomicU64) {
        if COUNTING.load(Ordering::Relaxed) {
            // gettid is a plain syscall: no allocation inside the allocator.
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as i64;
            if tid == WATCHED_TID.load(Ordering::Relaxed) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged (counting allocates
// nothing), so its guarantees are System's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note(&ALLOCS);
        // SAFETY: the caller's guarantees for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note(&ALLOCS);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(&ALLOCS);
        // SAFETY: `ptr` came from this allocator, which is System's (the caller's guarantee).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.note(&FREES);
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RATE: u32 = 48_000;

/// PCM datagrams, then FLAC ones (decoded on the playout thread as they are taken), one
/// scenario after the other: the allocator counts one thread at a time.
#[test]
fn steady_state_playout_allocates_nothing_per_packet() {
    // 5 ms per PCM packet; FLAC blocks as the controller sends them (10.7 ms).
    steady_state(Codec::Pcm, 240, 0);
    steady_state(Codec::Flac, 512, 1);
}

fn steady_state(codec: Codec, frames: usize, run: u32) {
    let dir = std::env::temp_dir().join(format!("chorus-alloc-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock: SharedClock = Arc::new(MonotonicRaw);
    let group = Ipv4Addr::new(
        239,
        255,
        101 + run as u8,
        (std::process::id() % 200) as u8 + 1,
    );
    let zone = chorus::speaker::ZoneAddr {
        name: "z".into(),
        group,
        port: 0,
    };
    let shared = Arc::new(Shared::new("alloc".into(), zone, RATE, 80, 0.0));
    // The speaker's clock is the controller's: identity model.
    *shared.snapshot.lock().unwrap() = Some(ClockSnapshot {
        t_ref: LocalNs(0),
        offset_ref: 0,
        freq: 0.0,
    });
    let port = 40_000 + (std::process::id() % 20_000) as u16 + run as u16;
    let lo = Ipv4Addr::LOCALHOST;
    let expect = Expect {
        rate: RATE,
        channels: 2,
    };
    let rx = StreamReceiver::open(group, port, lo, expect, true).expect("multicast receiver");
    let sender = chorus::net::multicast_sender(lo, 1, true).unwrap();
    let shutdown = Arc::new(AtomicBool::new(false));
    let wav = dir.join("out.wav").display().to_string();
    let open = {
        let clock = clock.clone();
        move || {
            SimDac::open(SimParams {
                backend: "sim",
                path: wav.clone(),
                heard_log: None,
                rate: RATE,
                channels: 2,
                format: SampleFormat::S16,
                ppm: 300.0,
                delay_step_frames: 0,
                stale_stamps: false,
                timestamp_noise_us: 0.0,
                wake_jitter_us: 0,
                xrun_every_frames: 0,
                period_frames: 480,
                buffer_frames: 1920,
                clock: clock.clone(),
            })
            .map(|d| Box::new(d) as Box<dyn Output>)
        }
    };
    let player = {
        let (shared, clock, shutdown) = (shared.clone(), clock.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("chorus-playout".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                WATCHED_TID.store(unsafe { libc::gettid() } as i64, Ordering::Relaxed);
                playout::supervise(open, rx, shared, clock, shutdown, None)
            })
            .unwrap()
    };

    // Feed 4 s of a tone, 100 ms ahead of its presentation time, at the real pace.
    let start = clock.now().0 + 100_000_000;
    let packet_ns = frames as i64 * 1_000_000_000 / RATE as i64;
    let packets = 4 * RATE as i64 / frames as i64;
    let mut counted_packets = 0;
    let mut samples = Vec::new();
    let mut datagram = Vec::new();
    let mut flac = FlacEncoder::new(RATE, 2, SampleFormat::S16).unwrap();
    for k in 0..packets {
        let pts = start + k * packet_ns;
        samples.clear();
        for i in 0..frames as i64 {
            let t = (k * frames as i64 + i) as f32 / RATE as f32;
            let v = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            samples.push(v);
            samples.push(v * 0.8);
        }
        let header = AudioHeader {
            session: 7,
            seq: k as u32,
            frame_index: (k as u64) * frames as u64,
            pts: ControllerNs(pts),
            rate: RATE,
            channels: 2,
            format: SampleFormat::S16,
            codec,
            frames: frames as u16,
        };
        match codec {
            Codec::Pcm => encode_audio(&header, &samples, &mut datagram),
            Codec::Flac => {
                put_audio_header(&header, &mut datagram);
                assert!(flac.encode(&samples, 1300, &mut datagram), "a tone fits");
            }
        }
        sender.send_to(&datagram, (group, port)).unwrap();
        // Count from 1.5 s to 3.5 s of audio: well after the start and the first re-anchor.
        if k == packets * 3 / 8 {
            COUNTING.store(true, Ordering::Relaxed);
        }
        if k == packets * 7 / 8 {
            COUNTING.store(false, Ordering::Relaxed);
        }
        if COUNTING.load(Ordering::Relaxed) {
            counted_packets += 1;
        }
        let due = pts - 100_000_000;
        let wait = due - clock.now().0;
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait as u64));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    shutdown.store(true, Ordering::Relaxed);
    player.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let st = shared.status();
    assert!(
        st.playout.counts.frames_played > 3 * RATE as u64,
        "played only {} frames",
        st.playout.counts.frames_played
    );
    assert!(
        st.network.packets >= packets as u64 - 10,
        "received {} packets of {packets}",
        st.network.packets
    );
    assert_eq!(st.network.invalid, 0, "datagrams refused as invalid");
    let (allocs, frees) = (
        ALLOCS.load(Ordering::Relaxed),
        FREES.load(Ordering::Relaxed),
    );
    println!(
        "{codec:?}: playout thread over {counted_packets} packets (2 s): {allocs} allocations, \
         {frees} frees; resampling {} at {:+.1} ppm",
        st.playout.resampling, st.playout.ratio_ppm
    );
    assert!(st.playout.resampling, "the resampler was not engaged");
    assert_eq!(
        (allocs, frees),
        (0, 0),
        "{codec:?}: the playout thread allocated or freed in steady state"
    );
    ALLOCS.store(0, Ordering::Relaxed);
    FREES.store(0, Ordering::Relaxed);
}
