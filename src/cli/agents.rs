//! `fleetctl agents` and `fleetctl revoke`: the registry, over the HTTPS
//! API, with an operator token minted locally for the one call.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::console::FrontEnd;
use super::job::{self, Show};
use super::token::{local_ca_pem, local_control_pin, local_issuer};
use super::{BadInput, Context};
use crate::auth::Audience;
use crate::control::client::ControlClient;
use crate::engine::{Command, JobError, JobOutput, RevokeRequest};
use crate::model::control::AgentRecord;
use crate::model::text;
use crate::model::time::now_unix;

/// Operator tokens minted for one CLI call live this long.
const CALL_TOKEN_TTL: Duration = Duration::from_mins(1);
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentsFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON array of the API's records.
    Json,
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = AgentsFormat::Table)]
    output: AgentsFormat,
    /// The control plane's URL; repeat it for replicas, which are tried in
    /// turn [default: control.url (else https://<control.listen>) and control.replicas].
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The agent to revoke (`fleetctl agents` lists ids).
    agent_id: String,
    /// The control plane's URL; repeat it for replicas, which are tried in
    /// turn [default: control.url (else https://<control.listen>) and control.replicas].
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
}

fn client(ctx: &Context, urls: &[String]) -> anyhow::Result<ControlClient> {
    let dir = ctx.paths.control_dir();
    let issuer = local_issuer(&dir)?;
    let ca_pem = local_ca_pem(&dir)?;
    let pin = local_control_pin(&dir)?;
    let (token, _) = issuer.issue(Audience::Operator, "fleetctl-cli", CALL_TOKEN_TTL)?;
    let urls = if urls.is_empty() {
        ctx.config.control.client_urls()
    } else {
        urls.to_vec()
    };
    if let Some(url) = urls.iter().find(|u| !u.starts_with("https://")) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--url {url:?} must start with https://"
        )));
    }
    Ok(ControlClient::with_replicas(
        &urls, &ca_pem, pin, token, TIMEOUT,
    )?)
}

pub async fn agents(args: AgentsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let agents = client(ctx, &args.urls)?.agents().await?;
    let mut out = std::io::stdout().lock();
    match args.output {
        AgentsFormat::Json => {
            super::output::write_json(&mut out, &agents, true)?;
        }
        AgentsFormat::Table => write_table(&mut out, &agents, now_unix())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Revokes one agent through the engine's revoke job (the console's `r`).
pub async fn revoke(args: RevokeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(url) = args.urls.iter().find(|u| !u.starts_with("https://")) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--url {url:?} must start with https://"
        )));
    }
    let link = super::console::link(ctx, args.urls);
    let config = super::console::engine_config(ctx, FrontEnd::Headless, Some(link), 64)?;
    let request = RevokeRequest {
        hosts: Vec::new(),
        agents: vec![args.agent_id],
    };
    let mut view = RevokeView(None);
    let ended = job::run(config, Command::Revoke(request), &mut view).await?;
    ended.check()?;
    match view.0 {
        Some(Ok(record)) => {
            println!(
                "revoked {} ({})",
                text::escape(&record.agent_id),
                text::escape(&record.hostname)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Err(e @ JobError::BadRequest(_))) => Err(BadInput::wrap(e)),
        Some(Err(e)) => Err(e.into()),
        None => Ok(ExitCode::from(super::EXIT_INTERRUPTED)),
    }
}

/// The one revocation's answer.
struct RevokeView(Option<Result<Box<AgentRecord>, JobError>>);

impl Show for RevokeView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        if let JobOutput::Revoked { result, .. } = output {
            self.0 = Some(result);
        }
        Ok(())
    }
}

fn write_table(
    out: &mut impl std::io::Write,
    agents: &[AgentRecord],
    now: i64,
) -> std::io::Result<()> {
    // What agents reported (names, addresses, version) is escaped: a
    // registry written by an older control plane may hold anything.
    let rows: Vec<[String; 7]> = agents
        .iter()
        .map(|a| {
            [
                a.agent_id.clone(),
                a.hostname.clone(),
                a.addresses.first().cloned().unwrap_or_default(),
                a.state.to_string(),
                a.agent_version.clone(),
                a.last_heartbeat_at
                    .map_or_else(|| "never".into(), |t| relative(t, now)),
                relative(a.identity_expires_at, now),
            ]
            .map(|cell| text::escape(&cell).into_owned())
        })
        .collect();
    let header = [
        "AGENT",
        "HOSTNAME",
        "ADDRESS",
        "STATE",
        "VERSION",
        "HEARTBEAT",
        "IDENTITY",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    if agents.is_empty() {
        writeln!(
            out,
            "(no agents registered yet; `fleetctl token join HOST` makes a join token)"
        )?;
    }
    Ok(())
}

/// `12s ago`, `in 59m`: what a person reads at a glance.
pub(super) fn relative(t: i64, now: i64) -> String {
    let d = (t - now).unsigned_abs();
    let amount = match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m", d / 60),
        3600..86_400 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86_400),
    };
    if t <= now {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistrationState;

    #[test]
    fn table_reads_at_a_glance() {
        let agent = AgentRecord {
            agent_id: "ag-0123456789abcdef".into(),
            hostname: "web1".into(),
            addresses: vec!["127.4.0.9".into()],
            stats_port: 9100,
            agent_version: "0.1.0".into(),
            state: RegistrationState::Lost,
            registered_at: 900,
            last_heartbeat_at: Some(988),
            identity_expires_at: 4_600,
            certificate_expires_at: 90_000,
            revoked_at: None,
        };
        let mut out = Vec::new();
        write_table(&mut out, std::slice::from_ref(&agent), 1_000).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap(), @r"
        AGENT                HOSTNAME  ADDRESS    STATE  VERSION  HEARTBEAT  IDENTITY
        ag-0123456789abcdef  web1      127.4.0.9  lost   0.1.0    12s ago    in 1h
        ");
        let hostile = AgentRecord {
            hostname: "web1\x1b]0;PWNED\x07".into(),
            agent_version: "0.1\x1b[2J\u{9b}".into(),
            ..agent
        };
        let mut out = Vec::new();
        write_table(&mut out, &[hostile], 1_000).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(['\x1b', '\x07', '\u{9b}']), "{text:?}");
        assert!(text.contains("0.1\\x1b[2J\\u{9b}"), "{text}");
        let mut empty = Vec::new();
        write_table(&mut empty, &[], 1_000).unwrap();
        assert!(
            String::from_utf8(empty)
                .unwrap()
                .contains("fleetctl token join")
        );
    }
}
