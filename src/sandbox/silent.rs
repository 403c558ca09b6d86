//! An address that never answers, without root.
//!
//! Dropping packets needs root (nftables) or a network namespace. Instead a
//! listener with the smallest accept queue is filled by connections of our
//! own that are never accepted: Linux then drops further SYNs for that port
//! (counted as ListenOverflows) rather than answering them, so a client's
//! connect sees no SYN-ACK and no RST and times out, as with a dead host.
//! Only that port is silent: the address still answers ping, and its other
//! ports refuse connections, as loopback does for every address.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// How long a probe connect waits to decide the queue is full.
const PROBE: Duration = Duration::from_millis(100);
/// Connections the queue can hold is backlog + 1; a few more for safety.
const MAX_FILLERS: usize = 8;

/// A port that swallows connection attempts for as long as it is held.
#[derive(Debug)]
pub struct Silent {
    addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<Socket>,
}

impl Silent {
    /// Binds `addr` and fills its accept queue. Blocks for about 0.1 s.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        listener.set_reuse_address(true)?;
        listener.bind(&addr.into())?;
        listener.listen(0)?;
        let mut fillers = Vec::new();
        // Each connect that still completes took a place in the queue; the
        // first that times out proves the queue is full.
        loop {
            let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            match probe.connect_timeout(&addr.into(), PROBE) {
                Ok(()) if fillers.len() < MAX_FILLERS => fillers.push(probe),
                Ok(()) => {
                    return Err(io::Error::other(format!(
                        "{addr} kept accepting connections: cannot make it silent"
                    )));
                }
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }

    /// The silent address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
