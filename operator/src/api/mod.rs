//! The AppRelease resource: its types, their defaults, and the checks of their values. No I/O.

pub mod conditions;
pub mod duration;
pub mod image;
pub mod notifications;
pub mod presets;
pub mod requests;
pub mod schedule;
pub mod spec;
pub mod status;
pub mod time;
pub mod validate;
pub mod version;

pub use notifications::*;
pub use presets::*;
pub use requests::*;
pub use spec::*;
pub use status::*;

/// Annotation whose new value asks the operator to try a failed version again.
pub const RETRY_ANNOTATION: &str = "apprelease.io/retry";

/// Annotation that approves the upgrade to the version it names, with `approval: Manual`.
pub const APPROVE_ANNOTATION: &str = "apprelease.io/approve";

/// Field manager of every server-side apply the operator makes (invariant 8).
pub const FIELD_MANAGER: &str = "apprelease-operator";

/// Finalizer the operator holds on an AppRelease while an upgrade is in flight, so that a
/// deletion waits for a running migration, restore or down-migration Job and leaves the
/// targets in a consistent state.
pub const FINALIZER: &str = "apprelease.io/upgrade-in-flight";
