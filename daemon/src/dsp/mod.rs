//! Signal processing both roles use (pure): the fractional resampler, the volume ramp, the
//! one fade shape, and the distortion measure the tests hold them to.

pub mod fade;
pub mod measure;
pub mod resampler;
pub mod volume;
