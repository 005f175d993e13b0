//! What a queue item is, decided once when it is queued (and shown, logged and opened by that),
//! not sniffed again from a path each time it plays.

use std::path::{Path, PathBuf};

/// One item of a zone's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An audio file, decoded.
    File(PathBuf),
    /// A named pipe of raw PCM in `[controller] fifo-format` (MPD, Mopidy, librespot).
    Fifo(PathBuf),
    /// An internet radio stream, `http(s)://`.
    Radio(String),
    /// A line-in capture device, `alsa:DEVICE`.
    Capture(String),
}

impl Item {
    /// What a path (or a playlist's entry) is: a radio URL, a FIFO, or a file. Reads the file
    /// system (the FIFO test).
    pub fn classify(p: PathBuf) -> Item {
        let s = p.to_string_lossy();
        if super::radio::is_radio(&s) {
            Item::Radio(s.into_owned())
        } else if super::capture::is_capture(&s) {
            Item::Capture(s.into_owned())
        } else if super::pipe::is_fifo(&p) {
            Item::Fifo(p)
        } else {
            Item::File(p)
        }
    }

    /// The item as a path (a URL or device name as one, for messages and the title).
    pub fn path(&self) -> &Path {
        match self {
            Item::File(p) | Item::Fifo(p) => p,
            Item::Radio(s) | Item::Capture(s) => Path::new(s),
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path().display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_what_its_name_or_its_file_says() {
        let p = |s: &str| Item::classify(PathBuf::from(s));
        assert_eq!(
            p("https://radio.example/live"),
            Item::Radio("https://radio.example/live".into())
        );
        assert_eq!(p("alsa:hw:1"), Item::Capture("alsa:hw:1".into()));
        assert_eq!(p("/music/a.flac"), Item::File("/music/a.flac".into()));
        let dir = std::env::temp_dir().join(format!("chorus-item-{}", std::process::id()));
        let fifo = crate::audio::pipe::tests::make_fifo(&dir, "fifo");
        assert_eq!(Item::classify(fifo.clone()), Item::Fifo(fifo.clone()));
        assert_eq!(
            Item::Fifo(fifo.clone()).to_string(),
            fifo.display().to_string()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
