//! Expanding a URI into a queue of files: a file, a folder (sorted, recursively), or an .m3u or .pls
//! playlist (relative entries resolve against the playlist's folder).
//!
//! Only files under the media roots (`[controller] media-roots`) are played: a caller of the API
//! cannot make the controller read /etc or a user's home. Paths are resolved (`..`, symlinks)
//! before they are checked. Folder walks do not follow symlinked folders (a loop of them
//! stalled the API), stop at 16 levels, `MAX_VISITED` entries and `MAX_ITEMS` files, and run
//! on a blocking thread, not on the API's workers (the caller's business).

use crate::audio::Item;
use std::path::{Component, Path, PathBuf};

/// Entries a folder walk looks at, at most.
const MAX_VISITED: usize = 200_000;
/// Files a URI expands to, at most (a whole library, shuffled, is a fair thing to ask).
pub(crate) const MAX_ITEMS: usize = 50_000;
/// Folder levels a walk descends, at most.
const MAX_DEPTH: u32 = 16;

/// The folders the controller plays from, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MediaRoots(Vec<PathBuf>);

impl MediaRoots {
    /// From the configured folders; ones missing now are kept as written (a USB disk mounted
    /// later under /media is still allowed).
    pub(crate) fn new<S: AsRef<str>>(roots: &[S]) -> Self {
        MediaRoots(
            roots
                .iter()
                .map(|r| {
                    let p = Path::new(r.as_ref());
                    std::fs::canonicalize(p).unwrap_or_else(|_| lexical(p))
                })
                .collect(),
        )
    }

    /// Whether `p` lies under a root, once `..` and symlinks are resolved (as far as the path
    /// exists: a missing playlist entry is checked as written).
    pub(crate) fn allows(&self, p: &Path) -> bool {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| lexical(p));
        self.0.iter().any(|r| real.starts_with(r))
    }
}

/// `p` with `.` and `..` taken out, without asking the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Why a URI gives nothing to play.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError {
    #[error("{0}: no such file or folder")]
    NotFound(String),
    #[error("{0}: only local files, folders, .m3u playlists, FIFOs, http(s):// radio streams and alsa:DEVICE line-in are supported")]
    UnsupportedScheme(String),
    #[error("{uri}: cannot read: {source}")]
    Read { uri: String, source: std::io::Error },
    #[error("{0}: contains no audio files")]
    Empty(String),
    #[error("{0}: outside the folders this controller plays from ([controller] media-roots)")]
    Outside(String),
}

/// File extensions treated as audio when scanning a folder.
pub(crate) const AUDIO_EXTENSIONS: &[&str] = &[
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

/// Expands `uri` (a path or `file://` URL) into the files to play, in order: only files under
/// `roots`. Reads the file system: not on an async worker.
pub(crate) fn expand(uri: &str, roots: &MediaRoots) -> Result<Vec<Item>, QueueError> {
    if crate::audio::capture::is_capture(uri) {
        // Line-in: one item, the device (opened, or refused with the device's reason, when
        // it plays).
        if crate::audio::capture::device(uri).is_none() {
            return Err(QueueError::UnsupportedScheme(
                uri.chars().take(80).collect(),
            ));
        }
        return Ok(vec![Item::Capture(uri.into())]);
    }
    if crate::audio::radio::is_radio(uri) {
        // A live stream: one item, the URL itself.
        if uri.len() > 2048 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(QueueError::UnsupportedScheme(
                uri.chars().take(80).collect(),
            ));
        }
        return Ok(vec![Item::Radio(uri.into())]);
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
    if !roots.allows(path) {
        return Err(QueueError::Outside(uri.into()));
    }
    let mut out = Vec::new();
    let read = |source| QueueError::Read {
        uri: uri.into(),
        source,
    };
    if path.is_dir() {
        let mut visited = 0;
        scan_dir(path, &mut out, 0, &mut visited, roots).map_err(read)?;
    } else if is_playlist(path) {
        read_m3u(path, &mut out).map_err(read)?;
        let listed = out.len();
        out.retain(|p| crate::audio::radio::is_radio(&p.to_string_lossy()) || roots.allows(p));
        if out.len() < listed {
            log::warn!(
                "{uri}: {} entries outside the media roots left out",
                listed - out.len()
            );
        }
        out.truncate(MAX_ITEMS);
    } else {
        out.push(path.to_path_buf());
    }
    if out.is_empty() {
        return Err(QueueError::Empty(uri.into()));
    }
    Ok(out.into_iter().map(Item::classify).collect())
}

/// Audio files under `dir`, sorted, depth first. Symlinked folders are not followed (no
/// loops); symlinked files are, if they lead under a root.
fn scan_dir(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    depth: u32,
    visited: &mut usize,
    roots: &MediaRoots,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        *visited += 1;
        if *visited > MAX_VISITED {
            break;
        }
        if let Ok(e) = e {
            entries.push((e.path(), e.file_type().ok()));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, kind) in entries {
        if out.len() >= MAX_ITEMS || *visited > MAX_VISITED {
            break;
        }
        match kind {
            Some(k) if k.is_dir() => scan_dir(&p, out, depth + 1, visited, roots)?,
            Some(k) if k.is_symlink() && is_audio(&p) && p.is_file() && roots.allows(&p) => {
                out.push(p)
            }
            Some(k) if k.is_symlink() => {}
            Some(_) if is_audio(&p) => out.push(p),
            _ => {}
        }
    }
    Ok(())
}

/// Largest playlist read, bytes (50 000 entries of 160 bytes fit).
const MAX_PLAYLIST_BYTES: u64 = 8 << 20;

/// Reads an .m3u (one entry per line, `#` comments) or .pls (`FileN=entry`, in the order of N)
/// playlist, at most `MAX_PLAYLIST_BYTES` of it. Relative entries resolve against the
/// playlist's folder.
fn read_m3u(list: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(list)?
        .take(MAX_PLAYLIST_BYTES)
        .read_to_end(&mut bytes)?;
    let pls = extension(list).as_deref() == Some("pls");
    let base = list.parent().unwrap_or(Path::new("."));
    out.extend(parse_playlist(&String::from_utf8_lossy(&bytes), pls, base));
    Ok(())
}

/// The entries of an .m3u or (`pls`) .pls playlist's text, in order, at most `MAX_ITEMS`:
/// stations as they are, paths joined to `base` when relative. Entries are kept even when
/// missing: the streamer reports them and moves on. Pure: the fuzz target's too.
pub(crate) fn parse_playlist(text: &str, pls: bool, base: &Path) -> Vec<PathBuf> {
    let lines = text
        .lines()
        .map(|l| l.trim().trim_start_matches('\u{feff}'));
    let entries: Vec<&str> = if pls {
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
    let paths = entries.into_iter().filter(|l| !l.is_empty()).map(|line| {
        if crate::audio::radio::is_radio(line) {
            // A station in a playlist (the way most radio directories hand them out).
            return PathBuf::from(line);
        }
        let p = Path::new(line.strip_prefix("file://").unwrap_or(line));
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    });
    paths.take(MAX_ITEMS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> MediaRoots {
        MediaRoots::new(&["/"])
    }

    #[test]
    fn only_files_under_the_media_roots_are_played_and_walks_end() {
        let base = std::env::temp_dir().join(format!("chorus-roots-{}", std::process::id()));
        let music = base.join("music");
        std::fs::create_dir_all(music.join("album")).unwrap();
        std::fs::create_dir_all(base.join("private")).unwrap();
        std::fs::write(music.join("album/a.flac"), b"x").unwrap();
        std::fs::write(base.join("private/secret.wav"), b"x").unwrap();
        let roots = MediaRoots::new(&[music.to_str().unwrap()]);
        let m = |p: &str| music.join(p).to_str().unwrap().to_string();
        assert_eq!(
            expand(&m("album"), &roots).unwrap(),
            [Item::File(music.join("album/a.flac"))]
        );
        // Outside, through .., through a symlink (to a file and to a folder).
        for bad in [
            base.join("private/secret.wav")
                .to_str()
                .unwrap()
                .to_string(),
            m("../private/secret.wav"),
            "/etc/passwd".to_string(),
        ] {
            assert!(
                matches!(expand(&bad, &roots), Err(QueueError::Outside(_))),
                "{bad}"
            );
        }
        std::os::unix::fs::symlink(base.join("private/secret.wav"), music.join("s.wav")).unwrap();
        std::os::unix::fs::symlink(base.join("private"), music.join("p")).unwrap();
        assert!(matches!(
            expand(&m("s.wav"), &roots),
            Err(QueueError::Outside(_))
        ));
        assert!(matches!(
            expand(&m("p"), &roots),
            Err(QueueError::Outside(_))
        ));
        // A walk leaves both out; a playlist's entries outside are left out.
        std::fs::write(
            music.join("list.m3u"),
            "album/a.flac\n../private/secret.wav\n/etc/passwd\n",
        )
        .unwrap();
        assert_eq!(
            expand(m("").trim_end_matches('/'), &roots).unwrap(),
            [Item::File(music.join("album/a.flac"))]
        );
        assert_eq!(
            expand(&m("list.m3u"), &roots).unwrap(),
            [Item::File(music.join("album/a.flac"))]
        );
        // A loop of symlinked folders ends at once.
        std::os::unix::fs::symlink(&music, music.join("album/loop")).unwrap();
        std::os::unix::fs::symlink(music.join("album"), music.join("album/loop2")).unwrap();
        assert_eq!(
            expand(&m("album"), &roots).unwrap(),
            [Item::File(music.join("album/a.flac"))]
        );
        // A root that is not there yet (a disk mounted later) is still a root.
        let later = MediaRoots::new(&["/media/not-yet/../not-yet"]);
        assert!(later.allows(Path::new("/media/not-yet/x.flac")));
        assert!(!later.allows(Path::new("/media/not-yet/../x.flac")));
        std::fs::remove_dir_all(&base).unwrap();
    }

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
        let q = expand(dir.to_str().unwrap(), &all()).unwrap();
        let names: Vec<_> = q
            .iter()
            .map(|p| {
                p.path()
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.wav", "b.flac", "sub/c.mp3"]);
        let l = expand(dir.join("list.m3u").to_str().unwrap(), &all()).unwrap();
        assert_eq!(
            l,
            vec![
                Item::File(dir.join("sub/c.mp3")),
                Item::File("/abs/x.wav".into()),
                Item::Radio("https://radio.example/live".into())
            ]
        );
        assert!(matches!(
            expand("/nonexistent/x.wav", &all()),
            Err(QueueError::NotFound(_))
        ));
        // Radio: one item, the URL; other schemes and broken URLs are refused.
        assert_eq!(
            expand("http://radio/x", &all()).unwrap(),
            vec![Item::Radio("http://radio/x".into())]
        );
        for bad in ["ftp://radio/x", "http://radio/a b", "smb://nas/music"] {
            assert!(
                matches!(expand(bad, &all()), Err(QueueError::UnsupportedScheme(_))),
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
            expand(dir.join("radio.PLS").to_str().unwrap(), &all()).unwrap(),
            vec![
                Item::Radio("https://radio.example/pls".into()),
                Item::File(dir.join("sub/c.mp3")),
                Item::File("/abs/y.flac".into())
            ]
        );
        std::fs::write(dir.join("bad.pls"), "[playlist]\nFileX=a\nnothing\n").unwrap();
        assert!(matches!(
            expand(dir.join("bad.pls").to_str().unwrap(), &all()),
            Err(QueueError::Empty(_))
        ));
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        assert!(matches!(
            expand(dir.join("empty").to_str().unwrap(), &all()),
            Err(QueueError::Empty(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
