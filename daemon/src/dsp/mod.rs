//! Signal processing both roles use (pure): the fractional resampler, the volume ramp and the
//! one fade shape.

pub mod fade;
pub mod resampler;
pub mod volume;
