//! Reverse DNS names for live hosts, through the system resolver (so
//! `/etc/hosts` and nsswitch apply, as they do for every other tool).

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Semaphore;

/// getnameinfo blocks a thread; bound how many run at once.
static LOOKUPS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(16));
const TIMEOUT: Duration = Duration::from_secs(5);

/// The PTR name of `addr`, or `None` when it has none or the lookup is slow.
pub async fn lookup(addr: IpAddr) -> Option<String> {
    let _permit = LOOKUPS.acquire().await.ok()?;
    let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&addr).ok());
    tokio::time::timeout(TIMEOUT, lookup)
        .await
        .ok()?
        .ok()
        .flatten()
}
