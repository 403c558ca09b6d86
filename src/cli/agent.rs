//! `fleetctl agent --config FILE`: the node agent, as `deploy` launches it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::BadInput;
use crate::agent::{self, AgentConfig};

/// Runs the agent until SIGTERM or Ctrl-C.
pub fn run(config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = config_file.ok_or_else(|| {
        BadInput::wrap(anyhow::anyhow!(
            "`fleetctl agent` needs its config file: fleetctl agent --config FILE"
        ))
    })?;
    let config = AgentConfig::load(path).map_err(BadInput::wrap)?;
    // One thread is plenty for a few scrapes a second and a heartbeat, and
    // keeps the agent small on every host it runs on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        agent::run(config, stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::warn!("cannot watch for SIGTERM; stop the agent with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    stop.cancel();
}
