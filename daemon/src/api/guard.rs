//! Access to the API: an optional bearer token (`[api] token-file` or `token`) required on calls
//! that change state (and, with `protect-reads`, on every call), compared in constant time, or
//! a call signed with it (the controller's, see `sign`: the token never goes to an address
//! learnt from UDP); and
//! a per-client limit on calls that change state (a runaway script or a flood must not keep the
//! controller busy restarting tracks).

use super::sign::{Nonces, SCHEME};
use super::ApiError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The API's gatekeeper.
pub(crate) struct Guard {
    /// SHA-256 of the token, if one is set (comparing digests takes the same time whatever the
    /// presented token's length or content).
    token: Option<[u8; 32]>,
    /// The token itself, for signed calls, and the nonces they used.
    raw: Option<Vec<u8>>,
    nonces: Mutex<Nonces>,
    protect_reads: bool,
    /// This host's name and the other names browsers may call the API by.
    hostname: String,
    allowed_hosts: Vec<String>,
    /// Calls that change state, per client and second (burst: twice that).
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Guard {
    #[cfg(test)]
    pub(crate) fn new(token: Option<Vec<u8>>, protect_reads: bool, per_second: u32) -> Guard {
        Guard::with_hosts(token, protect_reads, per_second, vec![])
    }

    /// A guard that also takes browsers' calls by the names in `allowed_hosts`.
    pub(crate) fn with_hosts(
        token: Option<Vec<u8>>,
        protect_reads: bool,
        per_second: u32,
        allowed_hosts: Vec<String>,
    ) -> Guard {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Guard {
            token: token.as_deref().map(digest),
            raw: token,
            nonces: Mutex::new(Nonces::default()),
            protect_reads,
            hostname,
            allowed_hosts,
            per_second: per_second.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the `Authorization` header carries the token.
    fn authorized(&self, req: &Request) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let Some(got) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let got = digest(got.trim().as_bytes());
        // Constant time: every byte compared, differences folded.
        got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Takes one call from `ip`'s bucket; false when it is empty.
    fn allow(&self, ip: IpAddr) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        if b.len() > 4096 {
            // Many clients (or spoofed sources): start over rather than grow without bound.
            b.clear();
        }
        let now = Instant::now();
        let burst = 2.0 * self.per_second;
        let (tokens, last) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The middleware: 401 without the token where one is needed, 429 over the limit.
pub(crate) async fn check(
    State(g): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(why) = super::browser::refuse(req.headers(), &g.hostname, &g.allowed_hosts) {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: why,
        }
        .into_response();
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let (req, authorized) = match signed(&g, req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if (mutating || g.protect_reads) && !authorized {
        // Wrong guesses count against the client's share too (they were never limited).
        if !g.allow(peer.ip()) {
            return limited(&g);
        }
        let mut r = ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "this call needs the API token: send `Authorization: Bearer <token>`".into(),
        }
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if mutating && !g.allow(peer.ip()) {
        return limited(&g);
    }
    next.run(req).await
}

fn limited(g: &Guard) -> Response {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: format!(
            "more than {} calls a second that change state; slow down",
            g.per_second
        ),
    }
    .into_response()
}

/// Largest body of a signed call (the calls the controller forwards are small).
const MAX_SIGNED_BODY: usize = 64 * 1024;

/// Whether the call is authorized: by the bearer token, or (a `Chorus-Signed` header) by a
/// MAC under it over the call, body included (the body is read, checked and put back).
async fn signed(g: &Guard, req: Request) -> Result<(Request, bool), Response> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(SCHEME))
        .map(str::to_string);
    let (Some(token), Some(value)) = (&g.raw, value) else {
        let ok = g.authorized(&req);
        return Ok((req, ok));
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_SIGNED_BODY).await else {
        return Err(
            ApiError::bad_request("a signed call's body must be at most 64 KiB").into_response(),
        );
    };
    let ok = g.nonces.lock().is_ok_and(|mut n| {
        n.verify(
            token,
            &value,
            parts.method.as_str(),
            parts.uri.path(),
            &bytes,
        )
        .is_ok()
    });
    Ok((Request::from_parts(parts, Body::from(bytes)), ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri("/api/v1/stop");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn token_is_checked() {
        let g = Guard::new(Some(b"s3cret-token".to_vec()), false, 10);
        assert!(g.authorized(&req(Some("Bearer s3cret-token"))));
        assert!(!g.authorized(&req(Some("Bearer s3cret-tokeN"))));
        assert!(!g.authorized(&req(Some("Bearer "))));
        assert!(!g.authorized(&req(Some("Basic s3cret-token"))));
        assert!(!g.authorized(&req(None)));
        let open = Guard::new(None, false, 10);
        assert!(open.authorized(&req(None)));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let g = Guard::new(None, false, 5);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let granted = (0..30).filter(|_| g.allow(ip)).count();
        assert_eq!(granted, 10);
        // Another client has its own bucket.
        assert!(g.allow("10.0.0.8".parse().unwrap()));
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(g.allow(ip), "refilled at 5 a second");
    }
}
