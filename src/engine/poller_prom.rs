//! The poller's Prometheus rounds: asking, and turning the answers into
//! what the actor takes from direct reads (see [`super::super::prometheus`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{JobError, JobMsg, PollSettings, Poller};
use crate::engine::HISTORY_WINDOW;
use crate::engine::prometheus::{PromAgent, PromClient, PromError, PromPoint, StatsSource};

/// A round of PromQL queries: the fleet now, and its history when asked.
pub(super) type PromRound = (
    Result<HashMap<IpAddr, PromAgent>, PromError>,
    Option<Result<HashMap<IpAddr, Vec<PromPoint>>, PromError>>,
);

/// The Prometheus client when it is the stats source (`Ok(None)` when
/// agents are read directly); `Err` when it cannot be made (said to the
/// actor).
pub(super) async fn prometheus_client(
    settings: &PollSettings,
    to_actor: &mpsc::Sender<JobMsg>,
) -> Result<Option<Arc<PromClient>>, ()> {
    let StatsSource::Prometheus(source) = &settings.source else {
        return Ok(None);
    };
    match PromClient::new(source.clone(), settings.timeout) {
        Ok(client) => Ok(Some(Arc::new(client))),
        Err(e) => {
            let error =
                JobError::Failed(format!("cannot ask Prometheus for the fleet's stats: {e}"));
            let _ = to_actor.send(JobMsg::Registry(Err(error.into()))).await;
            Err(())
        }
    }
}

/// Asks Prometheus for the fleet now (and its history, when `history`),
/// in the background; the answers come back on `tx`.
pub(super) fn spawn_prom_round(
    client: &Arc<PromClient>,
    tx: &mpsc::Sender<PromRound>,
    history: bool,
    step: Duration,
) {
    let (client, tx) = (Arc::clone(client), tx.clone());
    tokio::spawn(async move {
        let now = crate::engine::prometheus::unix_now_f64();
        let fleet = client.fleet().await;
        let past = if history && fleet.is_ok() {
            Some(client.history(HISTORY_WINDOW, step, now).await)
        } else {
            None
        };
        let _ = tx.send((fleet, past)).await;
    });
}

impl Poller {
    /// Takes in a round of PromQL answers: each agent's figures go to the
    /// actor as a stats read would (the focused host's direct read wins);
    /// an agent Prometheus has nothing on is shown unreachable with why.
    /// Returns how many agents it updated.
    pub(super) async fn prom_fleet(
        &mut self,
        fleet: &Result<HashMap<IpAddr, PromAgent>, PromError>,
    ) -> u64 {
        let now = Instant::now();
        let focused = *self.focus.borrow();
        let (interval, max) = (self.settings.interval, self.settings.max_backoff);
        let mut updated = 0;
        for (ip, target) in &mut self.targets {
            if focused == Some(*ip) || !(target.registered || target.deployed) {
                continue;
            }
            let result = match fleet {
                Ok(fleet) => match fleet.get(ip) {
                    Some(agent) => agent.to_stats(&self.link.url),
                    None => Err(format!(
                        "Prometheus has no series for {}:{} (is it scraped through /v1/sd?)",
                        target.addr.ip(),
                        target.addr.port()
                    )),
                },
                Err(e) => Err(e.to_string()),
            };
            let (result, retry_in) = match result {
                Ok(stats) => {
                    target.backoff.succeeded(now);
                    updated += 1;
                    (Ok(Box::new(stats)), None)
                }
                // Prometheus is asked every interval whatever happens: the
                // wait shown is the next round's.
                Err(e) => {
                    target.backoff.failed(now, interval, max);
                    (Err(crate::poll::PollError::Unreachable(e)), Some(interval))
                }
            };
            let _ = self
                .to_actor
                .send(JobMsg::Stats {
                    addr: *ip,
                    result,
                    failures: target.backoff.failures(),
                    retry_in,
                })
                .await;
        }
        if let Err(e) = fleet {
            tracing::warn!("cannot read the fleet's stats from Prometheus: {e}");
        }
        updated
    }

    /// Takes in the history query; whether it worked.
    pub(super) async fn prom_history(
        &self,
        history: Result<HashMap<IpAddr, Vec<PromPoint>>, PromError>,
    ) -> bool {
        match history {
            Ok(history) => {
                for (addr, points) in history {
                    if self.targets.contains_key(&addr) {
                        let _ = self.to_actor.send(JobMsg::History { addr, points }).await;
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!("cannot read the fleet's history from Prometheus: {e}");
                false
            }
        }
    }
}
