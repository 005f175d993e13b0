//! Wiring: starts the roles a config enables, the HTTP API, and stops cleanly on a signal.

use crate::api;
use crate::clock::{process_clock, SharedClock};
use crate::config::Config;
use crate::controller::{self, Registry};
use crate::net::multicast_sender;
use crate::speaker::{self, net::Expect, Shared};
use axum::extract::State;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use chorus_api::SyncServiceCounters;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("speaker output: {0}")]
    Output(#[from] speaker::output::OutputError),
    #[error("config: {0}")]
    Config(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

struct Roles {
    controller: Option<Arc<controller::api::Ctx>>,
    speaker: Option<Arc<Shared>>,
    clock: SharedClock,
    events: Arc<api::events::Events>,
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads `path` (see `reload`).
pub fn run(cfg: Config, path: std::path::PathBuf) -> Result<(), DaemonError> {
    // Stacks of 512 KiB instead of 2 MiB: with memory locked (the playout path must never
    // page-fault), every byte of every thread's stack is resident.
    // A speaker's network side is a sync exchange a few times a second, a heartbeat and its
    // API (the stream is read by the playout thread): one thread, no wake-ups between workers.
    // A controller answers many speakers and decodes: two workers.
    let mut builder = if cfg.controller.enabled {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = builder
        .max_blocking_threads(8)
        .thread_stack_size(512 * 1024)
        .enable_all()
        .thread_name("chorus-net")
        .build()
        .map_err(io("tokio runtime"))?;
    rt.block_on(run_async(cfg, path))
}

async fn run_async(cfg: Config, path: std::path::PathBuf) -> Result<(), DaemonError> {
    let clock: SharedClock = process_clock(cfg.testing.clock_offset_ms, cfg.testing.clock_ppm);
    let shutdown = Arc::new(AtomicBool::new(false));
    let auth = cfg.security.auth();
    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .map_err(io(format!("HTTP API on {}", cfg.api.listen)))?;
    let api_port = listener
        .local_addr()
        .map_err(io("HTTP API address"))?
        .port();

    let token = cfg
        .api
        .load_token()
        .map_err(|p| DaemonError::Config(p.to_string()))?;
    log_protection(&cfg, auth.keyed(), token.is_some());
    let events = Arc::new(api::events::Events::default());
    let base = Base {
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        auth: auth.clone(),
        events: events.clone(),
    };
    let mut roles = Roles {
        controller: None,
        speaker: None,
        clock: clock.clone(),
        events: events.clone(),
    };
    if cfg.controller.enabled {
        roles.controller = Some(start_controller(&cfg, &base, token.as_deref())?);
    }
    let mut playout = None;
    if cfg.speaker.enabled {
        let (shared, thread) = start_speaker(&cfg, &base, api_port)?;
        roles.speaker = Some(shared);
        playout = Some(thread);
    }

    let pulse = roles.speaker.clone();
    let reload_speaker = roles.speaker.clone();
    let running = cfg.clone();
    // mDNS: announce the API; a controller also browses.
    let discovery = cfg
        .api
        .mdns
        .then(|| announce(&cfg, api_port, roles.controller.as_deref()))
        .flatten();
    let guard = Arc::new(api::guard::Guard::with_hosts(
        token,
        cfg.api.protect_reads,
        cfg.api.mutating_per_second,
        cfg.api.allowed_hosts.clone(),
    ));
    let app = router(roles, guard);
    log::info!("HTTP API listening on {}", cfg.api.listen);
    // Ready: the API listens and the roles run. A speaker whose device is missing is ready
    // too: it says why in its status and keeps trying (a unit that failed to start would
    // only restart into the same missing device).
    match crate::notify::notify("READY=1\nSTATUS=running") {
        Ok(true) => log::info!("told systemd we are ready"),
        Ok(false) => {}
        Err(e) => log::warn!("cannot notify systemd: {e}"),
    }
    watchdog(clock.clone(), shutdown.clone(), pulse);
    let sd = shutdown.clone();
    // At most 512 connections, 32 per address, none idle for ever (see api::listener).
    let listener = crate::api::listener::CappedListener::new(listener).tap_io(|_| {});
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        wait_for_signal(path, running, reload_speaker).await;
        sd.store(true, Ordering::Relaxed);
        // Event streams never end on their own: end them, or the shutdown waits on them.
        events.close();
    });
    let result = server.await.map_err(io("HTTP API"));
    if let Some(d) = &discovery {
        d.stop();
    }
    let _ = crate::notify::notify("STOPPING=1");
    shutdown.store(true, Ordering::Relaxed);
    if let Some(t) = playout {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    log::info!("stopped");
    result
}

/// Announces the API over mDNS (as the speaker's name, or as the zone's controller on this
/// host); a controller also browses for speakers. None when that fails (logged).
fn announce(
    cfg: &Config,
    api_port: u16,
    controller: Option<&controller::api::Ctx>,
) -> Option<Arc<crate::discovery::Discovery>> {
    let (z, iface) = (&cfg.zone, cfg.interface());
    let mut role = vec![];
    if cfg.controller.enabled {
        role.push("controller");
    }
    if cfg.speaker.enabled {
        role.push("speaker");
    }
    let instance = if cfg.speaker.enabled {
        cfg.speaker.name.clone()
    } else {
        format!(
            "{} controller on {}",
            z.name,
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        )
    };
    match crate::discovery::Discovery::start(
        &instance,
        &role.join("+"),
        &z.name,
        iface,
        api_port,
        cfg.controller.enabled,
    ) {
        Ok(d) => {
            log::info!(
                "announced as {instance:?} (mDNS {})",
                crate::discovery::SERVICE
            );
            let d = Arc::new(d);
            if let Some(c) = controller {
                let _ = c.discovery.set(d.clone());
            }
            Some(d)
        }
        Err(e) => {
            log::warn!("no mDNS announcement: {e}");
            None
        }
    }
}

/// Feeds systemd's watchdog while healthy: the runtime runs this task and, on a speaker, the
/// playout thread went round its loop in the last two seconds.
fn watchdog(clock: SharedClock, shutdown: Arc<AtomicBool>, pulse: Option<Arc<Shared>>) {
    if let Some(every) = crate::notify::watchdog_interval() {
        let (ck, sd) = (clock, shutdown);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !sd.load(Ordering::Relaxed) {
                tick.tick().await;
                // Healthy: the runtime runs this task and, on a speaker, the playout thread
                // went round its loop in the last two seconds.
                let playout_ok = pulse.as_ref().is_none_or(|s| {
                    ck.now().0 - s.stats.playout_alive_ns.load(Ordering::Relaxed) < 2_000_000_000
                });
                if playout_ok {
                    let _ = crate::notify::notify("WATCHDOG=1");
                } else {
                    log::warn!("playout thread stalled: not feeding the watchdog");
                }
            }
        });
    }
}

/// Says how this box is protected: its datagram key and API token, or their absence.
fn log_protection(cfg: &Config, keyed: bool, token: bool) {
    if keyed {
        log::info!("{}", cfg.protection());
    } else {
        log::warn!(
            "{}: anyone on the LAN can send this zone audio and sync datagrams ([security] \
             key-file; the package makes /etc/chorus/key at install)",
            cfg.protection()
        );
    }
    if token {
        let reads = if cfg.api.protect_reads {
            ", reads too"
        } else {
            ""
        };
        log::info!("API: calls that change state need the token{reads}");
    }
}

/// What both roles start from.
struct Base {
    clock: SharedClock,
    shutdown: Arc<AtomicBool>,
    auth: crate::wire::auth::Auth,
    events: Arc<api::events::Events>,
}

/// Starts the controller: a streamer thread per zone, the sync service, the API's context.
fn start_controller(
    cfg: &Config,
    base: &Base,
    token: Option<&[u8]>,
) -> Result<Arc<controller::api::Ctx>, DaemonError> {
    let (clock, shutdown, auth, events) = (&base.clock, &base.shutdown, &base.auth, &base.events);
    let (iface, z) = (cfg.interface(), &cfg.zone);
    let c = &cfg.controller;
    let mut zones = vec![];
    let unicast = Arc::new(std::sync::Mutex::new(
        controller::unicast::UnicastTargets::default(),
    ));
    for addr in cfg.zones() {
        let sock = multicast_sender(iface, z.ttl, z.loopback).map_err(io("multicast sender"))?;
        let params = controller::streamer::StreamParams {
            zone: addr.name.clone(),
            auth: auth.clone(),
            dest: SocketAddr::V4(SocketAddrV4::new(addr.group, addr.port)),
            rate: z.rate,
            channels: z.channels,
            format: z.sample_format,
            codec: cfg.codec_of(&addr.name),
            delivery: cfg.delivery_of(&addr.name),
            unicast: unicast.clone(),
            stream: addr.stream(),
            latency_ms: c.latency_ms,
            fade_ms: c.fade_ms,
            fec_group: c.fec_group as usize,
            raw_formats: crate::audio::source::RawFormats {
                fifo: c.fifo_format.parse().unwrap_or_default(),
                capture: c.capture_format.parse().unwrap_or_default(),
                radio_local: c.radio_allow_local,
            },
            sync_port: c.sync_port,
        };
        let streamer = controller::streamer::spawn(
            params,
            sock,
            clock.clone(),
            shutdown.clone(),
            events.clone(),
        )
        .map_err(io("streamer thread"))?;
        log::info!(
            "controller: zone {} on {}:{} ({} Hz, {} ch, {:?}, {:?})",
            addr.name,
            addr.group,
            addr.port,
            z.rate,
            z.channels,
            z.sample_format,
            cfg.codec_of(&addr.name),
        );
        zones.push(controller::api::ZoneHandle { addr, streamer });
    }
    let registry = Arc::new(Registry::default());
    let sync_stats = Arc::new(SyncServiceCounters::default());
    let sync_sock = std::net::UdpSocket::bind(("0.0.0.0", c.sync_port))
        .map_err(io(format!("sync service on UDP port {}", c.sync_port)))?;
    {
        let (auth, clock, registry, stats) = (
            auth.clone(),
            clock.clone(),
            registry.clone(),
            sync_stats.clone(),
        );
        let recent = zones.iter().map(|z| z.streamer.recent.clone()).collect();
        let policy = crate::controller::sync_service::UnicastPolicy {
            targets: unicast.clone(),
            only: zones
                .iter()
                .filter(|z| cfg.delivery_of(&z.addr.name) == crate::wire::Delivery::Unicast)
                .map(|z| z.addr.stream())
                .collect(),
        };
        std::thread::Builder::new()
            .name("chorus-sync".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                crate::controller::sync_service::serve(
                    sync_sock, auth, clock, registry, recent, stats, policy,
                )
            })
            .map_err(io("sync service thread"))?;
    }
    log::info!("controller: clock sync on UDP {}", c.sync_port);
    let ctx = Arc::new(controller::api::Ctx {
        zones,
        registry,
        clock: clock.clone(),
        sync_stats,
        token: token
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned()),
        events: events.clone(),
        discovery: std::sync::OnceLock::new(),
        media_roots: controller::queue::MediaRoots::new(&cfg.controller.media_roots),
    });
    controller::events::watch_controller(ctx.clone(), events.clone());
    Ok(ctx)
}

/// Starts the speaker: its playout thread (which opens the device) and its sync client.
/// The speaker's stream tap (`[testing] stream-tap`), if asked for.
fn stream_tap(cfg: &Config) -> Result<Option<speaker::tap::StreamTap>, DaemonError> {
    let z = &cfg.zone;
    match cfg.testing.stream_tap.as_str() {
        "" => Ok(None),
        path => speaker::tap::StreamTap::create(path, z.rate, z.channels)
            .map(Some)
            .map_err(|e| DaemonError::Io {
                what: format!("stream tap {path}"),
                source: std::io::Error::other(e),
            }),
    }
}

fn start_speaker(
    cfg: &Config,
    base: &Base,
    api_port: u16,
) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>), DaemonError> {
    let (clock, shutdown, auth, events) = (&base.clock, &base.shutdown, &base.auth, &base.events);
    let (group, iface, z) = (cfg.group(), cfg.interface(), &cfg.zone);
    let s = &cfg.speaker;
    let shared = Arc::new(
        Shared::new(
            s.name.clone(),
            speaker::ZoneAddr {
                name: z.name.clone(),
                group,
                port: z.port,
            },
            z.rate,
            s.volume,
            s.extra_latency_ms,
        )
        .with_events(events.clone()),
    );
    let fixed = !s.controller.is_empty();
    if fixed {
        if let Ok(mut c) = shared.controller.lock() {
            *c = s.controller.parse().ok();
        }
    }
    speaker::realtime::lock_memory();
    let open = {
        let (s, clock) = (s.clone(), clock.clone());
        let (rate, channels, format) = (z.rate, z.channels, z.sample_format);
        let mut attempts = 0u64;
        move || {
            if attempts > 0 && s.output == crate::config::OutputKind::Alsa {
                speaker::output::alsa::reload_config();
            }
            attempts += 1;
            speaker::output::open(&s, rate, channels, format, clock.clone())
        }
    };
    let tap = stream_tap(cfg)?;
    let receiving = speaker::Receiving {
        interface: iface,
        expect: Expect {
            rate: z.rate,
            channels: z.channels,
        },
        fixed_controller: fixed,
        auth: auth.clone(),
        delivery: (
            s.delivery,
            (
                s.auto_unicast_above_pct / 100.0,
                s.auto_multicast_below_pct / 100.0,
            ),
        ),
    };
    let unicast = s.delivery == crate::config::SpeakerDelivery::Unicast;
    shared.wants_unicast.store(unicast, Ordering::Relaxed);
    let rx = receiving
        .receiver(group, z.port)
        .map_err(io("multicast receiver"))?;
    shared
        .unicast_port
        .store(rx.unicast_port(), Ordering::Relaxed);
    let _ = shared.receiving.set(receiving);
    let (sh, ck, sd) = (shared.clone(), clock.clone(), shutdown.clone());
    let playout = std::thread::Builder::new()
        .name("chorus-playout".into())
        .stack_size(256 * 1024)
        .spawn(move || speaker::playout::supervise(open, rx, sh, ck, sd, tap))
        .map_err(io("playout thread"))?;
    let host = Arc::new(speaker::sync_host::SyncHost {
        shared: shared.clone(),
        api_port,
        heartbeat_stream: Some(cfg.testing.heartbeat_stream.clone()).filter(|s| !s.is_empty()),
    });
    let (ck, au) = (clock.clone(), auth.clone());
    // A thread of its own, blocking on its socket: one wake-up per exchange, no runtime
    // in between (the tokio thread then serves only the API).
    std::thread::Builder::new()
        .name("chorus-sync".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            if let Err(e) = crate::sync::client::run(host, ck, au) {
                log::error!("sync client failed: {e}");
            }
        })
        .map_err(io("sync client thread"))?;
    log::info!(
        "speaker {}: joined {}:{} via {}",
        s.name,
        group,
        z.port,
        iface
    );
    Ok((shared, playout))
}

/// Returns on SIGTERM or SIGINT; reloads the config on SIGHUP.
async fn wait_for_signal(
    path: std::path::PathBuf,
    mut running: Config,
    speaker: Option<Arc<Shared>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the daemon can still be stopped by SIGKILL.
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return log::info!("SIGTERM: stopping"),
            _ = int.recv() => return log::info!("SIGINT: stopping"),
            _ = hup.recv() => running = reload(&path, running, speaker.as_deref()),
        }
    }
}

/// SIGHUP: reads the config again. What can change while running changes (log level, the
/// speaker's extra latency); every other difference is named in the log as needing a restart;
/// a config that does not load changes nothing. Returns the configuration now in effect.
pub fn reload(path: &std::path::Path, running: Config, speaker: Option<&Shared>) -> Config {
    let new = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("SIGHUP: {e}\nkeeping the running configuration");
            return running;
        }
    };
    let mut now = running;
    let mut applied: Vec<&str> = vec![];
    if new.log_level != now.log_level {
        if std::env::var_os("RUST_LOG").is_some() {
            log::warn!("SIGHUP: log-level changed, but RUST_LOG overrides it");
        } else if let Ok(level) = new.log_level.parse::<log::LevelFilter>() {
            log::set_max_level(level);
            now.log_level = new.log_level.clone();
            applied.push("log-level");
        }
    }
    if new.speaker.extra_latency_ms != now.speaker.extra_latency_ms {
        if let Some(s) = speaker {
            s.extra_latency_us.store(
                (new.speaker.extra_latency_ms * 1000.0) as i64,
                Ordering::Relaxed,
            );
            now.speaker.extra_latency_ms = new.speaker.extra_latency_ms;
            applied.push("speaker.extra-latency-ms");
        }
    }
    let restart: Vec<&str> = [
        (new.api != now.api, "[api]"),
        (new.zone != now.zone, "[zone]"),
        (new.controller != now.controller, "[controller]"),
        (new.speaker != now.speaker, "[speaker]"),
        (new.testing != now.testing, "[testing]"),
        // A key added on a running box left its stream untagged while the log said nothing
        // needed a restart.
        (new.security != now.security, "[security]"),
    ]
    .into_iter()
    .filter_map(|(differs, section)| differs.then_some(section))
    .collect();
    log::info!(
        "SIGHUP: reloaded {}: applied: {}; needs a restart to take effect: {}",
        path.display(),
        if applied.is_empty() {
            "nothing".to_string()
        } else {
            applied.join(", ")
        },
        if restart.is_empty() {
            "nothing".to_string()
        } else {
            restart.join(", ")
        }
    );
    now
}

#[path = "daemon_routes.rs"]
mod routes;
use routes::router;
pub(crate) use routes::CommonDoc;
