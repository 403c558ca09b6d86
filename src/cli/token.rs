//! `fleetctl token join|operator`: tokens minted locally with the control
//! plane's signing key. The token goes to stdout and nowhere else.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use super::{BadInput, Context};
use crate::auth::{Audience, AuthError, TokenIssuer};
use crate::config::parse_duration;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A one-use join token for HOST: the agent there must register with
    /// that hostname or address.
    Join {
        /// The host's name or address, as its agent will report it.
        host: String,
        /// Lifetime [default: control.join_ttl, 15m].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// An operator token: for Prometheus (/v1/sd, agents' /metrics) or scripts.
    Operator {
        /// Lifetime [default: control.operator_ttl, 1h].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Who the token is for (shown in the control plane's log).
        #[arg(long, default_value = "operator")]
        name: String,
    },
}

/// The signing key of the control plane in `dir`, which must exist: a
/// token from a key nobody serves with would be refused everywhere.
pub fn local_issuer(dir: &Path) -> anyhow::Result<TokenIssuer> {
    match TokenIssuer::load(dir) {
        Err(e @ AuthError::NoKey { .. }) => Err(BadInput::wrap(e)),
        other => other.context("cannot load the token signing key"),
    }
}

/// The fleet CA's certificate (public half only) of the control plane in
/// `dir`: what clients and agents trust.
pub fn local_ca_pem(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("ca.pem");
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the fleet CA {} (start `fleetctl serve` once with this data dir)",
            path.display()
        )
    })
}

pub fn run(cmd: &TokenCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let issuer = local_issuer(&ctx.paths.control_dir())?;
    let control = &ctx.config.control;
    let (token, claims) = match cmd {
        TokenCommand::Join { host, ttl } => {
            if host.parse::<std::net::IpAddr>().is_err()
                && rustls_pki_types::DnsName::try_from(host.as_str()).is_err()
            {
                return Err(BadInput::wrap(anyhow::anyhow!(
                    "{host:?} is neither a host name nor an IP address"
                )));
            }
            let ttl = positive(ttl.unwrap_or(control.join_ttl))?;
            issuer.issue(Audience::Join, host, Some(host), ttl)?
        }
        TokenCommand::Operator { ttl, name } => {
            let ttl = positive(ttl.unwrap_or(control.operator_ttl))?;
            issuer.issue(Audience::Operator, name, None, ttl)?
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    tracing::info!(
        aud = claims.aud,
        sub = claims.sub,
        expires_at = claims.exp,
        "token minted"
    );
    Ok(ExitCode::SUCCESS)
}

fn positive(ttl: Duration) -> anyhow::Result<Duration> {
    if ttl.as_secs() == 0 {
        return Err(BadInput::wrap(anyhow::anyhow!("--ttl must be at least 1s")));
    }
    Ok(ttl)
}
