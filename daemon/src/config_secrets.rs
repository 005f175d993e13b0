//! The config's secrets: the datagram key and the API token, inline or from files (the
//! package's beside the config by default), read with care; and what guards this box, in words.

use super::*;

/// A secret given inline (`<section>.<name>`) or in a file (`<section>.<name>-file`), trimmed:
/// None when neither is set; with the key it came from, for messages.
fn load_secret(
    section: &str,
    name: &str,
    inline: &str,
    file: Option<&str>,
) -> Result<Option<(Vec<u8>, String)>, Problem> {
    let file = file.unwrap_or("");
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(Problem::new(
            section,
            format!("set {name}-file or {name}, not both"),
        )),
        (false, true) => Ok(Some((
            inline.trim().as_bytes().to_vec(),
            format!("{section}.{name}"),
        ))),
        (true, false) => match read_small(file) {
            Ok(bytes) => Ok(Some((
                String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec(),
                format!("{section}.{name}-file"),
            ))),
            Err(e) => Err(Problem::new(
                format!("{section}.{name}-file"),
                format!("cannot read {file}: {e}"),
            )),
        },
    }
}

/// Reads at most 4 KiB of a file: a key file is small, and a path such as /dev/zero must not
/// hang the daemon or `check-config`.
pub(super) fn read_small(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // A FIFO would block the reload, check-config and SIGTERM; /dev/urandom is no key.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl SecurityConfig {
    /// The key, read and checked, if one is configured.
    pub fn load_key(&self) -> Result<Option<Vec<u8>>, Problem> {
        let Some((key, name)) =
            load_secret("security", "key", &self.key, self.key_file.as_deref())?
        else {
            return Ok(None);
        };
        if key.len() < crate::wire::auth::MIN_KEY_LEN {
            return Err(Problem::new(
                name,
                format!(
                    "the key is {} bytes; use at least {} (e.g. `openssl rand -hex 32`)",
                    key.len(),
                    crate::wire::auth::MIN_KEY_LEN
                ),
            ));
        }
        Ok(Some(key))
    }

    /// The authenticator for this config (checked by `validate` first).
    pub fn auth(&self) -> crate::wire::auth::Auth {
        match self.load_key() {
            Ok(Some(k)) => crate::wire::auth::Auth::with_key(&k),
            _ => crate::wire::auth::Auth::none(),
        }
    }
}

impl ApiConfig {
    /// The token, read and checked, if one is configured.
    pub fn load_token(&self) -> Result<Option<Vec<u8>>, Problem> {
        let Some((token, key)) =
            load_secret("api", "token", &self.token, self.token_file.as_deref())?
        else {
            return Ok(None);
        };
        if token.len() < MIN_TOKEN_LEN {
            return Err(Problem::new(
                key,
                format!(
                    "the token is {} bytes; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                    token.len()
                ),
            ));
        }
        if token.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(Problem::new(
                key,
                "the token must be printable ASCII without spaces",
            ));
        }
        Ok(Some(token))
    }
}

impl Config {
    /// The secrets the package generates beside the config file (`key`, `api-token`) are used
    /// when the config names none, so that a default install is authenticated; `key-file = ""`
    /// or `token-file = ""` turns that off. A file that is there but cannot be read is an
    /// error, named with its key (`check-config` run without root says so).
    pub fn secrets_beside(&mut self, dir: &Path) {
        let beside = |slot: &mut Option<String>, inline: &str, name: &str| {
            if slot.is_none() && inline.is_empty() {
                let p = dir.join(name);
                let found = std::fs::symlink_metadata(&p).is_ok();
                *slot = Some(if found {
                    p.to_string_lossy().into_owned()
                } else {
                    String::new()
                });
            }
        };
        beside(&mut self.security.key_file, &self.security.key, "key");
        beside(&mut self.api.token_file, &self.api.token, "api-token");
    }

    /// What guards this box, in words: where the datagram key and the API token come from.
    pub fn protection(&self) -> String {
        let from = |inline: &str, file: &Option<String>, key: &str| match file.as_deref() {
            Some(f) if !f.is_empty() => f.to_string(),
            _ if !inline.is_empty() => format!("[{key}]"),
            _ => String::new(),
        };
        let key = from(&self.security.key, &self.security.key_file, "security");
        let token = from(&self.api.token, &self.api.token_file, "api");
        let key = if key.is_empty() {
            "datagrams NOT authenticated".to_string()
        } else {
            format!("datagrams authenticated with {key}")
        };
        let token = if token.is_empty() {
            "API without a token".to_string()
        } else {
            format!("API token from {token}")
        };
        format!("{key}, {token}")
    }
}
