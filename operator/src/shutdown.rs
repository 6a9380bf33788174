//! SIGTERM and SIGINT: the first asks for a graceful shutdown (no new reconciles, the ones in
//! flight finish, the Lease is released), a second one for an immediate exit.
//!
//! One listener for the whole process, handed to each controller as its graceful-shutdown
//! trigger (`Controller::graceful_shutdown_on`) instead of kube-runtime's
//! `shutdown_on_signal`, which installs its own listeners per controller: the Lease must be
//! released after every controller has drained, so the process decides when it is done.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;

/// How far shutdown has been asked for: 0 not, 1 gracefully, 2 at once.
#[derive(Clone)]
pub struct Shutdown {
    level: watch::Receiver<u8>,
}

impl Shutdown {
    /// Listens for SIGTERM and SIGINT from now on, in a task of the current runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (sender, level) = watch::channel(0);
        tokio::spawn(async move {
            for next in 1..=2 {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
                if next == 1 {
                    info!(
                        "shutting down: finishing the reconciles in flight (signal again to stop at once)"
                    );
                } else {
                    info!("stopping at once");
                }
                // The receivers live as long as the process's work; none left is no error.
                let _ = sender.send(next);
            }
            // Keeps the level for late waiters: a closed channel would end them too early.
            std::future::pending::<()>().await;
        });
        Ok(Self { level })
    }

    /// Resolves once a shutdown has been asked for.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.reached(1)
    }

    /// Resolves once an immediate stop has been asked for (a second signal).
    pub fn forced(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.reached(2)
    }

    fn reached(&self, wanted: u8) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut level = self.level.clone();
        async move {
            // Err only if the sender is gone, which `on_signals` never lets happen.
            let _ = level.wait_for(|l| *l >= wanted).await;
        }
    }
}
