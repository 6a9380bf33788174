//! Simulated time: controllers measure durations (Job run times, progress deadlines, pod
//! readiness) in simulated seconds that pass `scale` times faster than real ones. Timestamps
//! written into objects stay wall-clock, so clients comparing them to their own clock agree.

use std::time::Duration;

use tokio::time::Instant;

/// Converts between simulated and real durations.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    /// A clock running `scale` times faster than real time (values below 0.001 are clamped).
    pub fn new(scale: f64) -> Self {
        Self {
            scale: scale.max(0.001),
        }
    }

    /// The speed-up factor.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Simulated time elapsed since a real instant.
    pub fn since(&self, start: Instant) -> Duration {
        self.simulated(start.elapsed())
    }

    /// The simulated duration a real one amounts to.
    pub fn simulated(&self, real: Duration) -> Duration {
        real.mul_f64(self.scale)
    }

    /// The real duration a simulated one takes.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.scale)
    }
}
