//! Pure builders of the Jobs an upgrade runs, and the names they get.

pub mod build;
pub mod names;
pub mod presets;

pub use build::{BuildError, build};
