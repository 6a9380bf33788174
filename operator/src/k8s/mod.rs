//! The thin I/O layer: reads snapshots, carries out decisions, publishes Events.

pub mod act;
pub mod error;
pub mod events;
pub mod observe;

pub use act::Executor;
pub use error::Error;
pub use events::Reporter;

#[cfg(test)]
mod tests;
