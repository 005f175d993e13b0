//! Discovery with mDNS/DNS-SD (`_chorus._tcp`, the mdns-sd crate): every daemon announces its
//! HTTP API with its role and zone in the TXT record, so that `chorusctl` finds the controller
//! without being told where it is; a controller also browses, and lists the speakers of its
//! zone that announce themselves but do not reach it (a wrong key, a firewall, a wrong group),
//! which is what a user setting up a box wants to see.

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// The DNS-SD service type.
pub(crate) const SERVICE: &str = "_chorus._tcp.local.";

pub(crate) use chorus_api::Found;

/// Why discovery could not start (the daemon runs without it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    #[error("mDNS thread: {0}")]
    Thread(std::io::Error),
}

/// The announcement and, on a controller, what the browse found.
pub(crate) struct Discovery {
    daemon: ServiceDaemon,
    found: Arc<Mutex<BTreeMap<String, Found>>>,
}

impl Discovery {
    /// Announces this daemon's API (`port`) on `interface` (0.0.0.0: every interface) and, when
    /// `browse`, keeps a list of the others.
    pub(crate) fn start(
        instance: &str,
        role: &str,
        zone: &str,
        interface: Ipv4Addr,
        port: u16,
        browse: bool,
    ) -> Result<Discovery, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        if !interface.is_unspecified() {
            // Only where the zone lives.
            let _ = daemon.disable_interface(mdns_sd::IfKind::All);
            let _ = daemon.enable_interface(mdns_sd::IfKind::Addr(interface.into()));
        }
        let host = format!(
            "{}.local.",
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "chorus".into())
        );
        let props: HashMap<String, String> = [
            ("role", role),
            ("zone", zone),
            ("api", "/api/v1"),
            ("version", env!("CARGO_PKG_VERSION")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ip = if interface.is_unspecified() {
            String::new()
        } else {
            interface.to_string()
        };
        let info = ServiceInfo::new(SERVICE, instance, &host, ip.as_str(), port, props)?
            .enable_addr_auto();
        daemon.register(info)?;
        let found = Arc::new(Mutex::new(BTreeMap::new()));
        if browse {
            let rx = daemon.browse(SERVICE)?;
            let f = found.clone();
            std::thread::Builder::new()
                .name("chorus-mdns".into())
                .spawn(move || {
                    while let Ok(ev) = rx.recv() {
                        apply(&f, ev);
                    }
                })
                .map_err(DiscoveryError::Thread)?;
        }
        Ok(Discovery { daemon, found })
    }

    /// Everything seen announcing itself (on a daemon that browses).
    pub(crate) fn found(&self) -> Vec<Found> {
        self.found
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Withdraws the announcement (on shutdown: others forget us at once).
    pub(crate) fn stop(&self) {
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(std::time::Duration::from_millis(500));
        }
    }
}

fn apply(found: &Mutex<BTreeMap<String, Found>>, ev: ServiceEvent) {
    let Ok(mut m) = found.lock() else { return };
    match ev {
        ServiceEvent::ServiceResolved(s) => {
            let Some(addr) = s
                .addresses
                .iter()
                .map(|a| a.to_ip_addr())
                .find(|a| a.is_ipv4())
            else {
                return;
            };
            let prop = |k: &str| {
                s.txt_properties
                    .get_property_val_str(k)
                    .unwrap_or("")
                    .to_string()
            };
            if m.len() >= 256 && !m.contains_key(&s.fullname) {
                return;
            }
            let name = s
                .fullname
                .strip_suffix(SERVICE)
                .unwrap_or(&s.fullname)
                .trim_end_matches('.')
                .replace("\\032", " ")
                .replace("\\ ", " ");
            m.insert(
                s.fullname.clone(),
                Found {
                    name,
                    role: prop("role"),
                    zone: prop("zone"),
                    api_url: format!("http://{}", std::net::SocketAddr::new(addr, s.port)),
                },
            );
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            m.remove(&fullname);
        }
        _ => {}
    }
}
