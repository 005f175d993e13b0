//! chorusctl's HTTP client: typed calls to the API (`chorus_api`'s bodies and answers), errors
//! sorted into what the exit code says, and where the box's token may go.

use crate::enc;
use chorus_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub(crate) enum Failure {
    Unreachable(String),
    Refused(String),
    Usage(String),
}

pub(crate) struct Client {
    pub(crate) base: String,
    agent: ureq::Agent,
    pub(crate) token: Option<String>,
    zone: Option<String>,
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<String>, zone: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            token,
            zone,
        }
    }

    pub(crate) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
    ) -> Result<T, Failure> {
        let mut req = self.agent.request(method, url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {}", t.trim()));
        }
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b),
            None => req.call(),
        };
        match res {
            Ok(r) => r
                .into_json()
                .map_err(|e| Failure::Refused(format!("bad answer from {url}: {e}"))),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error.message)
                    .unwrap_or(text);
                let hint = if code == 401 && self.token.is_none() {
                    format!(
                        "; pass --token or CHORUS_TOKEN, or, as root on a paired box, \
                         --controller {} to send {BOX_TOKEN}",
                        self.base
                    )
                } else {
                    String::new()
                };
                Err(Failure::Refused(format!("{msg} (HTTP {code}){hint}")))
            }
            Err(e) => Err(Failure::Unreachable(format!(
                "cannot reach chorusd at {}: {e}",
                self.base
            ))),
        }
    }
    /// The URL of `path`, with `?zone=` for calls that act on a zone.
    fn url(&self, path: &str) -> String {
        let zoned = ![
            "/api/v1/speaker",
            "/api/v1/volume",
            "/api/v1/zones",
            "/api/v1/events",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        match &self.zone {
            Some(z) if zoned => format!("{}{}?zone={}", self.base, path, enc(z)),
            _ => format!("{}{}", self.base, path),
        }
    }
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call("GET", &self.url(path), None)
    }
    /// A POST without a body.
    pub(crate) fn act<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call("POST", &self.url(path), None)
    }
    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.call("POST", &self.url(path), Some(json(body)))
    }
    pub(crate) fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.call("PUT", &self.url(path), Some(json(body)))
    }
    pub(crate) fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call("DELETE", &self.url(path), None)
    }
}

/// A request body's JSON (the API's bodies always serialize).
pub(crate) fn json(body: &impl Serialize) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// The token the package generates at install, the same on every box once paired.
pub(crate) const BOX_TOKEN: &str = "/etc/chorus/api-token";

/// Whether an API URL points at this box (loopback): an answer learnt from mDNS may come from
/// anyone on the LAN, and this box's token goes only where the user said or to itself.
pub(crate) fn is_this_box(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split('/')
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host == "localhost" {
        return true;
    }
    // An address of this box's own is one a socket can be bound to.
    host.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback() || std::net::UdpSocket::bind((a, 0)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::is_this_box;

    #[test]
    fn the_box_token_goes_only_to_this_box_unless_named() {
        for url in [
            "http://127.0.0.1:7780",
            "http://localhost:7780/",
            "http://[::1]:7780",
            "http://127.0.0.53:7780/api/v1",
        ] {
            assert!(is_this_box(url), "{url}");
        }
        // Not an address of this box (TEST-NET-1), names that are not this box's.
        for url in [
            "http://192.0.2.1:7780",
            "http://music-box.local:7780",
            "http://evil.example:80",
        ] {
            assert!(!is_this_box(url), "{url}");
        }
    }
}
