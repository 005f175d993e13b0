//! Clock synchronisation: the speaker's model of the controller clock (pure logic) and the
//! tasks that run the exchange over UDP.

pub mod model;
pub mod server;

pub use model::{ClockModel, ClockSnapshot, Exchange};
