//! The engine's settings from the config file, for every front end (the
//! console, `fleetctl status`, the headless jobs), and the control plane
//! the console uses.
//!
//! Which control plane (`engine.control`, default `auto`): with
//! `control.url` set, an external one (a `fleetctl serve` somewhere) and
//! the console uses it. Otherwise the console embeds one on
//! `control.listen`, with the same data dir as `fleetctl serve` would use;
//! when that address is taken, a `fleetctl serve` on this machine already
//! serves it, and the console uses that. `embed` always embeds (agents are
//! told `control.url` when set); `external` never does. Either way the
//! operator tokens are minted from the signing key in `<data_dir>/control/`.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::{ControlChoice, StatsSourceChoice};
use crate::control::{self, ControlPlane};
use crate::engine::prometheus::{PromAuth, PromSource, StatsSource};
use crate::engine::{
    ControlLink, DeploySettings, EngineConfig, PollSettings, Questions, SshSettings,
};
use crate::ssh::{ConnectFlags, HostKeyPolicy, TerminalPrompt};

/// Where the control plane the console uses comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlSource {
    /// In this process, on `control.listen`.
    Embedded,
    /// `control.url`, or a `fleetctl serve` already on `control.listen`.
    External,
    /// None usable: agents are not watched (the reason was logged).
    None,
}

/// A control plane started in this process; [`Embedded::stop`] ends it.
pub struct Embedded {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), control::ControlError>>,
}

impl Embedded {
    /// Stops serving and waits (bounded) for the server to end.
    pub async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("the embedded control plane ended with: {e}"),
            Ok(Err(e)) => tracing::warn!("the embedded control plane task failed: {e}"),
            Err(_) => tracing::warn!("the embedded control plane did not stop within 5s"),
        }
    }
}

/// The control plane to use, started here when none is configured.
pub async fn control(
    ctx: &Context,
) -> anyhow::Result<(Option<ControlLink>, Option<Embedded>, ControlSource)> {
    let config = &ctx.config.control;
    let dir = ctx.paths.control_dir();
    let embed = match ctx.config.engine.control {
        ControlChoice::Auto => config.url.is_none(),
        ControlChoice::Embed => true,
        ControlChoice::External => false,
    };
    if embed {
        match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => {
                let registry = super::serve::open_registry(config, &ctx.paths).await?;
                let plane =
                    ControlPlane::with_registry(&dir, registry, super::serve::settings(config))
                        .context("cannot start the embedded control plane")?;
                let stop = CancellationToken::new();
                let started = control::start(listener, plane, stop.clone().cancelled_owned())
                    .context("cannot start the embedded control plane")?;
                tracing::info!(url = %started.url, "embedded control plane serving");
                let link = ControlLink {
                    url: started.url,
                    replicas: config.replicas.clone(),
                    control_dir: dir,
                    operator_ttl: config.operator_ttl,
                };
                let embedded = Embedded {
                    stop,
                    task: started.task,
                };
                return Ok((Some(link), Some(embedded), ControlSource::Embedded));
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && ctx.config.engine.control == ControlChoice::Auto =>
            {
                tracing::info!(
                    listen = %config.listen,
                    "control.listen is taken: using the control plane already serving there"
                );
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot listen on control.listen {}: {e} (set control.url, or engine.control = \"external\", to use a control plane elsewhere)",
                    config.listen
                ));
            }
        }
    }
    if !dir.join("token.key").exists() {
        tracing::warn!(
            "no control plane keys in {}: agents are not watched (use the data dir `fleetctl serve` uses)",
            dir.display()
        );
        return Ok((None, None, ControlSource::None));
    }
    // Read now, so a missing CA is said at start rather than by every job.
    super::token::local_ca_pem(&dir)?;
    Ok((Some(link(ctx, Vec::new())), None, ControlSource::External))
}

/// The control plane whose keys are in the data dir, at `urls` (the first,
/// then its replicas), else `control.url` (else its listen address) and
/// `control.replicas`.
pub fn link(ctx: &Context, urls: Vec<String>) -> ControlLink {
    let mut urls = if urls.is_empty() {
        ctx.config.control.client_urls()
    } else {
        urls
    };
    let url = urls.remove(0);
    ControlLink {
        url,
        replicas: urls,
        control_dir: ctx.paths.control_dir(),
        operator_ttl: ctx.config.control.operator_ttl,
    }
}

/// Who the engine works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    /// The console (and `status`): the fleet read from the inventory,
    /// agents watched, questions asked in modals.
    Console,
    /// A headless job: it records, watches nothing, and asks on the
    /// terminal (or `SSH_ASKPASS`).
    Headless,
}

/// Where the fleet table's stats come from: `engine.stats_source`, with
/// `[engine.prometheus]`'s secrets and CA read from their files.
pub fn stats_source(ctx: &Context) -> anyhow::Result<StatsSource> {
    let engine = &ctx.config.engine;
    let prom = &engine.prometheus;
    let (StatsSourceChoice::Prometheus, Some(url)) = (engine.stats_source, &prom.url) else {
        return Ok(StatsSource::Agents);
    };
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
            .with_context(|| format!("cannot read engine.prometheus.{key} {}", path.display()))
    };
    let auth = match (
        &prom.bearer_token_file,
        &prom.basic_user,
        &prom.basic_password_file,
    ) {
        (Some(file), _, _) => PromAuth::Bearer(read(file, "bearer_token_file")?),
        (None, Some(user), Some(file)) => PromAuth::Basic {
            user: user.clone(),
            password: read(file, "basic_password_file")?,
        },
        _ => PromAuth::None,
    };
    let ca_pem = prom
        .ca_file
        .as_deref()
        .map(|file| read(file, "ca_file"))
        .transpose()?;
    Ok(StatsSource::Prometheus(PromSource {
        url: url.clone(),
        auth,
        ca_pem,
        selector: prom.selector.clone(),
    }))
}

/// The engine's settings: `[scan]`, `[ssh]` and `[engine]` of the config,
/// the one place they are read for every front end.
pub fn engine_config(
    ctx: &Context,
    front: FrontEnd,
    control: Option<ControlLink>,
    max_in_flight: usize,
) -> anyhow::Result<EngineConfig> {
    let console = front == FrontEnd::Console;
    // Only the console polls; a headless job never reads Prometheus.
    let source = if console {
        stats_source(ctx)?
    } else {
        StatsSource::Agents
    };
    let ssh = &ctx.config.ssh;
    let engine = &ctx.config.engine;
    Ok(EngineConfig {
        inventory: Some(ctx.paths.inventory()),
        keep_fleet: console,
        scan: ctx.config.scan.clone(),
        max_in_flight,
        ssh: SshSettings {
            known_hosts: ssh.known_hosts.clone(),
            ssh_config: ssh.ssh_config.clone(),
            // Nobody may be at a headless command's terminal to answer.
            policy: ssh.host_key_policy.unwrap_or(if console {
                HostKeyPolicy::Ask
            } else {
                HostKeyPolicy::Strict
            }),
            flags: ConnectFlags {
                user: ssh.user.clone(),
                identities: ssh.identities.clone(),
                ..ConnectFlags::default()
            },
            concurrency: ssh.concurrency,
            timeout: ssh.timeout,
        },
        control,
        poll: console.then(|| PollSettings {
            interval: engine.poll_interval,
            timeout: engine.poll_timeout,
            concurrency: engine.poll_concurrency,
            max_backoff: engine.poll_max_backoff,
            registry_interval: engine.registry_interval,
            agent_listen: engine.agent_listen.clone(),
            source,
        }),
        deploy: DeploySettings {
            listen: engine.agent_listen.clone(),
            ..DeploySettings::default()
        },
        questions: if console {
            Questions::Events
        } else {
            Questions::Ask(std::sync::Arc::new(TerminalPrompt))
        },
    })
}
