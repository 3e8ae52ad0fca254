//! Graceful shutdown: one trigger, any number of waiters.

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] cloned from its channel.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once shutdown was triggered (or the trigger dropped).
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first waiter.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Starts shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Another waiter.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Waits for shutdown.
    pub async fn wait(mut self) {
        // An error means the trigger is gone, which also means shutdown.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// A boxed gRPC response stream.
pub type ResponseStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Ends `stream` with UNAVAILABLE once shutdown starts. Watch streams never
/// end by themselves; without this a graceful shutdown would wait for them,
/// and clients would not learn to reconnect elsewhere.
pub fn until_shutdown<T: Send + 'static>(
    stream: impl futures::Stream<Item = Result<T, tonic::Status>> + Send + 'static,
    shutdown: Shutdown,
) -> ResponseStream<T> {
    use futures::StreamExt as _;
    let flag = shutdown.clone();
    let farewell = futures::stream::once(async move { flag.is_triggered() }).filter_map(
        |stopped| async move {
            stopped.then(|| {
                Err(crate::Error::new(
                    crate::Reason::ServerShuttingDown,
                    "server shutting down; reconnect",
                )
                .into())
            })
        },
    );
    Box::pin(stream.take_until(shutdown.wait()).chain(farewell))
}
