//! Calls from web browsers (pure logic): a page on another site must not drive the API
//! (cross-site request forgery: a form or `fetch` with `text/plain` needs no preflight), and a
//! name of the attacker's that resolves to this box must not make its pages same-origin (DNS
//! rebinding). Only calls that a browser made are judged (they carry `Origin` or
//! `Sec-Fetch-*`); curl, chorusctl and home automation send neither and are not affected.
//!
//! A browser's call is taken when the `Host` it was sent to is this box by address (an IP
//! literal), `localhost`, a `.local` (mDNS) name, this host's name, or a name in `[api]
//! allowed-hosts`; and when its `Origin`, if any, is that same host.

use axum::http::{header, HeaderMap};

/// Why a browser's call is refused (None: taken).
pub(crate) fn refuse(headers: &HeaderMap, hostname: &str, allowed: &[String]) -> Option<String> {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN.as_str());
    let browser = origin.is_some() || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
    if !browser {
        return None;
    }
    let host = text(header::HOST.as_str()).unwrap_or("");
    let name = host_name(host);
    if !known(name, hostname, allowed) {
        return Some(format!(
            "a browser's call to {:?}: not this box's address or name (add it to [api] \
             allowed-hosts)",
            truncate(host)
        ));
    }
    if let Some(o) = origin {
        let o_host = o.split_once("://").map_or(o, |(_, rest)| rest);
        if !o_host.eq_ignore_ascii_case(host) {
            return Some(format!(
                "a call from the page at {:?} to {:?}: only pages of this box may call it",
                truncate(o),
                truncate(host)
            ));
        }
    }
    None
}

/// The name part of a `Host` value (`name`, `name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(n, _)| n)
}

fn known(name: &str, hostname: &str, allowed: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || lower == "localhost"
        || lower.ends_with(".local")
        || (!hostname.is_empty() && lower == hostname.to_ascii_lowercase())
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// At most 80 characters of a value for a message.
fn truncate(v: &str) -> String {
    v.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn foreign_pages_and_rebound_names_are_refused_and_scripts_are_not_judged() {
        let allowed = vec!["speakers.home.arpa".to_string()];
        let judge = |p: &[(&str, &str)]| refuse(&headers(p), "kitchen", &allowed);
        // curl, chorusctl, Home Assistant: any Host, no Origin.
        assert_eq!(judge(&[("host", "kitchen.fritz.box:7780")]), None);
        // A page on another site posting to the box (CSRF).
        assert!(judge(&[
            ("host", "192.168.1.20:7780"),
            ("origin", "http://evil.example")
        ])
        .is_some());
        // DNS rebinding: the page's name now points at the box; same origin, foreign name.
        assert!(judge(&[
            ("host", "evil.example:7780"),
            ("origin", "http://evil.example:7780")
        ])
        .is_some());
        assert!(judge(&[
            ("host", "evil.example:7780"),
            ("sec-fetch-site", "same-origin")
        ])
        .is_some());
        // The box's own pages, by address, mDNS name, host name or an allowed name.
        for host in [
            "192.168.1.20:7780",
            "[fe80::1]:7780",
            "kitchen.local:7780",
            "KITCHEN:7780",
            "localhost:7780",
            "speakers.home.arpa:7780",
        ] {
            let origin = format!("http://{host}");
            assert_eq!(
                judge(&[("host", host), ("origin", &origin)]),
                None,
                "{host}"
            );
            assert_eq!(
                judge(&[("host", host), ("sec-fetch-mode", "cors")]),
                None,
                "{host}"
            );
        }
        // A browser without a Host header at all: refused.
        assert!(judge(&[("origin", "http://192.168.1.20:7780")]).is_some());
    }
}
