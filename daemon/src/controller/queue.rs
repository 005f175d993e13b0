//! Expanding a URI into a queue of files: a file, a folder (sorted, recursively), or an .m3u or .pls
//! playlist (relative entries resolve against the playlist's folder).

use std::path::{Path, PathBuf};

/// Why a URI gives nothing to play.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}: no such file or folder")]
    NotFound(String),
    #[error("{0}: only local files, folders, .m3u playlists, FIFOs, http(s):// radio streams and alsa:DEVICE line-in are supported")]
    UnsupportedScheme(String),
    #[error("{uri}: cannot read: {source}")]
    Read { uri: String, source: std::io::Error },
    #[error("{0}: contains no audio files")]
    Empty(String),
}

/// File extensions treated as audio when scanning a folder.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac", "aif", "aiff", "caf", "mka",
    "webm",
];

fn is_audio(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn extension(p: &Path) -> Option<String> {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

fn is_playlist(p: &Path) -> bool {
    matches!(extension(p).as_deref(), Some("m3u" | "m3u8" | "pls"))
}

/// Expands `uri` (a path or `file://` URL) into the files to play, in order.
pub fn expand(uri: &str) -> Result<Vec<PathBuf>, QueueError> {
    if crate::audio::capture::is_capture(uri) {
        // Line-in: one item, the device (opened, or refused with the device's reason, when
        // it plays).
        if crate::audio::capture::device(uri).is_none() {
            return Err(QueueError::UnsupportedScheme(
                uri.chars().take(80).collect(),
            ));
        }
        return Ok(vec![PathBuf::from(uri)]);
    }
    if crate::audio::radio::is_radio(uri) {
        // A live stream: one item, the URL itself.
        if uri.len() > 2048 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(QueueError::UnsupportedScheme(
                uri.chars().take(80).collect(),
            ));
        }
        return Ok(vec![PathBuf::from(uri)]);
    }
    let path = match uri.strip_prefix("file://") {
        Some(p) => p,
        None if uri.contains("://") => return Err(QueueError::UnsupportedScheme(uri.into())),
        None => uri,
    };
    let path = Path::new(path);
    if !path.exists() {
        return Err(QueueError::NotFound(uri.into()));
    }
    let mut out = Vec::new();
    if path.is_dir() {
        scan_dir(path, &mut out, 0).map_err(|source| QueueError::Read {
            uri: uri.into(),
            source,
        })?;
    } else if is_playlist(path) {
        read_m3u(path, &mut out).map_err(|source| QueueError::Read {
            uri: uri.into(),
            source,
        })?;
    } else {
        out.push(path.to_path_buf());
    }
    if out.is_empty() {
        return Err(QueueError::Empty(uri.into()));
    }
    Ok(out)
}

fn scan_dir(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            scan_dir(&p, out, depth + 1)?;
        } else if is_audio(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads an .m3u (one entry per line, `#` comments) or .pls (`FileN=entry`, in the order of N)
/// playlist. Relative entries resolve against the playlist's folder.
fn read_m3u(list: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let bytes = std::fs::read(list)?;
    let text = String::from_utf8_lossy(&bytes);
    let base = list.parent().unwrap_or(Path::new("."));
    let lines = text
        .lines()
        .map(|l| l.trim().trim_start_matches('\u{feff}'));
    let entries: Vec<&str> = if extension(list).as_deref() == Some("pls") {
        let mut numbered: Vec<(u32, &str)> = lines
            .filter_map(|l| {
                let (key, value) = l.split_once('=')?;
                let n = key.trim().to_ascii_lowercase();
                let n = n.strip_prefix("file")?.parse().ok()?;
                Some((n, value.trim()))
            })
            .collect();
        numbered.sort_by_key(|e| e.0);
        numbered.into_iter().map(|e| e.1).collect()
    } else {
        lines.filter(|l| !l.starts_with('#')).collect()
    };
    for line in entries.into_iter().filter(|l| !l.is_empty()) {
        if crate::audio::radio::is_radio(line) {
            // A station in a playlist (the way most radio directories hand them out).
            out.push(PathBuf::from(line));
            continue;
        }
        let entry = line.strip_prefix("file://").unwrap_or(line);
        let p = Path::new(entry);
        // Entries are kept even when missing: the streamer reports them and moves on.
        out.push(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_and_playlist() {
        let dir = std::env::temp_dir().join(format!("chorus-queue-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.flac", "a.wav", "notes.txt", "sub/c.mp3"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        std::fs::write(
            dir.join("list.m3u"),
            "#EXTM3U\nsub/c.mp3\n\n# comment\n/abs/x.wav\nhttps://radio.example/live\n",
        )
        .unwrap();
        let q = expand(dir.to_str().unwrap()).unwrap();
        let names: Vec<_> = q
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.wav", "b.flac", "sub/c.mp3"]);
        let l = expand(dir.join("list.m3u").to_str().unwrap()).unwrap();
        assert_eq!(
            l,
            vec![
                dir.join("sub/c.mp3"),
                PathBuf::from("/abs/x.wav"),
                PathBuf::from("https://radio.example/live")
            ]
        );
        assert!(matches!(
            expand("/nonexistent/x.wav"),
            Err(QueueError::NotFound(_))
        ));
        // Radio: one item, the URL; other schemes and broken URLs are refused.
        assert_eq!(
            expand("http://radio/x").unwrap(),
            vec![PathBuf::from("http://radio/x")]
        );
        for bad in ["ftp://radio/x", "http://radio/a b", "smb://nas/music"] {
            assert!(
                matches!(expand(bad), Err(QueueError::UnsupportedScheme(_))),
                "{bad}"
            );
        }
        // .pls: FileN entries in the order of N, other keys ignored.
        std::fs::write(
            dir.join("radio.PLS"),
            "[playlist]\nNumberOfEntries=3\nFile2=sub/c.mp3\nTitle2=x\nfile1=https://radio.example/pls\nLength1=-1\nFile10=/abs/y.flac\nVersion=2\n",
        )
        .unwrap();
        assert_eq!(
            expand(dir.join("radio.PLS").to_str().unwrap()).unwrap(),
            vec![
                PathBuf::from("https://radio.example/pls"),
                dir.join("sub/c.mp3"),
                PathBuf::from("/abs/y.flac")
            ]
        );
        std::fs::write(dir.join("bad.pls"), "[playlist]\nFileX=a\nnothing\n").unwrap();
        assert!(matches!(
            expand(dir.join("bad.pls").to_str().unwrap()),
            Err(QueueError::Empty(_))
        ));
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        assert!(matches!(
            expand(dir.join("empty").to_str().unwrap()),
            Err(QueueError::Empty(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
