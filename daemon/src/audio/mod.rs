//! Audio sources for the controller: decoding (symphonia), channel remixing and resampling
//! (rubato) into the zone's stream format.

pub mod capture;
pub mod decode;
pub mod item;
pub mod pipe;
pub mod radio;
pub mod remix;
pub mod resample;
pub mod source;

pub use decode::AudioError;
pub use item::Item;
pub use source::Source;
