//! A TCP relay whose link can be cut, to show an agent losing its control
//! plane: point the agent at the relay, let it register, then `cut()`.
//!
//! A cut closes every relayed connection and leaves the relay's address
//! [`Silent`]: new connections time out, as across a real network partition,
//! rather than being refused. `restore()` mends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SandboxError;
use super::silent::Silent;

/// A relay from a loopback address to a target; stopped on drop.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    state: Mutex<State>,
    relayed: Arc<AtomicUsize>,
}

#[derive(Debug)]
enum State {
    Open {
        stop: CancellationToken,
        task: JoinHandle<()>,
    },
    /// Cut: the address is held silent.
    Cut { _silent: Silent },
    /// Between a cut and a restore: nothing listens (connections are refused).
    Closed,
}

impl Relay {
    /// Listens on `listen` (port 0 picks one) and forwards each connection to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> Result<Self, SandboxError> {
        let listener = bind(listen).await?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        let relayed = Arc::new(AtomicUsize::new(0));
        let state = open(listener, target, Arc::clone(&relayed));
        Ok(Self {
            addr,
            target,
            state: Mutex::new(state),
            relayed,
        })
    }

    /// Where clients connect.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    #[must_use]
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections relayed so far (opened to the target), cut or not.
    #[must_use]
    pub fn relayed(&self) -> usize {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Whether the link is cut now.
    pub async fn is_cut(&self) -> bool {
        !matches!(*self.state.lock().await, State::Open { .. })
    }

    /// Closes every relayed connection; from now on connections to the
    /// relay go unanswered. Cutting a cut relay does nothing.
    pub async fn cut(&self) -> Result<(), SandboxError> {
        let mut state = self.state.lock().await;
        if let State::Open { stop, task } = &mut *state {
            stop.cancel();
            // The listener must be closed before its address is taken again.
            let _ = task.await;
            let addr = self.addr;
            let silent = tokio::task::spawn_blocking(move || Silent::bind(addr))
                .await
                .map_err(|e| SandboxError::Bind {
                    addr,
                    source: std::io::Error::other(e),
                })?
                .map_err(|source| SandboxError::Bind { addr, source })?;
            *state = State::Cut { _silent: silent };
        }
        Ok(())
    }

    /// Mends a cut: the relay forwards new connections again.
    pub async fn restore(&self) -> Result<(), SandboxError> {
        let mut state = self.state.lock().await;
        if !matches!(*state, State::Open { .. }) {
            // Drop the silent listener (and its queue) before binding anew.
            *state = State::Closed;
            let listener = bind(self.addr).await?;
            *state = open(listener, self.target, Arc::clone(&self.relayed));
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let State::Open { stop, .. } = self.state.get_mut() {
            stop.cancel();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SandboxError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind { addr, source })
}

fn open(listener: TcpListener, target: SocketAddr, relayed: Arc<AtomicUsize>) -> State {
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept(listener, target, relayed, stop.clone()));
    State::Open { stop, task }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    relayed: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    loop {
        let (client, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "relay accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let relayed = Arc::clone(&relayed);
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                return;
            };
            relayed.fetch_add(1, Ordering::Relaxed);
            let mut client = client;
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}
