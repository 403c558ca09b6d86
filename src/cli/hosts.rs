//! Which hosts a command acts on: named on the command line, `--all` of
//! the inventory, or `--select PATTERN` of it; and the inventory's hosts as
//! patterns see them (the same rows `fleetctl inventory` prints).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context as _;
use clap::Args;

use super::{BadInput, Context};
use crate::model::AgentState;
use crate::model::pattern::{Candidate, Pattern};
use crate::store::{HostAccess, Inventory};

/// Which hosts: named, every one in the inventory, or a selection of it.
#[derive(Debug, Clone, Args)]
pub struct HostsArgs {
    /// Hosts: names, addresses or ~/.ssh/config aliases, optionally user@host.
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Every host in the inventory.
    #[arg(long, conflicts_with_all = ["hosts", "select"])]
    pub all: bool,
    /// Inventory hosts matching an Ansible-style host PATTERN: groups
    /// (`web`, `role_web` for the tag role=web, `os_debian`, `agent_none`),
    /// host names and addresses with `*`, `~REGEX`, or FIELD=VALUE[|VALUE]
    /// (fields addr, name, os, arch, agent, reach, tag.KEY; `!=` negates);
    /// joined by `:` (or `,`), `:&` to intersect, `:!` to exclude.
    /// E.g. `web:&staging:!db*`, `tag.role=web`, `os=debian:&agent=none|failed`.
    #[arg(long, value_name = "PATTERN", conflicts_with = "hosts")]
    pub select: Option<String>,
}

/// One inventory host as patterns and `fleetctl inventory` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryHost {
    pub addr: IpAddr,
    pub candidate: Candidate,
    /// Facts fingerprinting learned, and the SSH port it used.
    pub facts: Option<crate::model::HostFacts>,
    pub port: Option<u16>,
    pub access: HostAccess,
}

/// Every host the inventory knows: scanned, fingerprinted, deployed to or
/// tagged, in address order.
pub fn inventory_hosts(inventory: &Inventory) -> anyhow::Result<Vec<InventoryHost>> {
    let mut by_addr = BTreeMap::<IpAddr, InventoryHost>::new();
    for h in inventory.hosts()? {
        let host = at(&mut by_addr, h.scan.addr);
        host.candidate.name.clone_from(&h.scan.name);
        host.candidate.reach = Some(h.scan.reach.as_str().to_string());
    }
    for f in inventory.all_facts()? {
        let Ok(addr) = f.address.parse() else {
            continue;
        };
        let host = at(&mut by_addr, addr);
        if f.host != f.address {
            host.candidate.name = Some(f.host.clone());
        }
        host.port = Some(f.port);
        if let Some(facts) = &f.facts {
            host.candidate.os.clone_from(&facts.os_id);
            host.candidate.arch.clone_from(&facts.arch);
            host.facts = Some(facts.clone());
        }
    }
    for d in inventory.deployments()? {
        let Ok(addr) = d.address.parse() else {
            continue;
        };
        let host = at(&mut by_addr, addr);
        host.candidate.agent = d.state.as_str().to_string();
        if d.host != d.address {
            host.candidate.name = Some(d.host.clone());
        }
        host.port = host.port.or(Some(d.port));
    }
    for (addr, tags) in inventory.all_tags()? {
        at(&mut by_addr, addr).candidate.tags = tags;
    }
    for (addr, access) in inventory.all_access()? {
        at(&mut by_addr, addr).access = access;
    }
    Ok(by_addr.into_values().collect())
}

/// The row for `addr`, added (known by address only) if new.
fn at(by_addr: &mut BTreeMap<IpAddr, InventoryHost>, addr: IpAddr) -> &mut InventoryHost {
    by_addr.entry(addr).or_insert_with(|| InventoryHost {
        addr,
        candidate: Candidate {
            addr: addr.to_string(),
            agent: AgentState::None.as_str().to_string(),
            ..Candidate::default()
        },
        facts: None,
        port: None,
        access: HostAccess::default(),
    })
}

/// A `--select` pattern, or the operator's mistake (exit 2).
pub fn parse_pattern(text: &str) -> anyhow::Result<Pattern> {
    Pattern::parse(text).map_err(BadInput::wrap)
}

/// The inventory hosts `--all` or `--select` pick (an error, exit 2, when
/// none does).
pub fn picked(args: &HostsArgs, inventory: &Inventory) -> anyhow::Result<Vec<InventoryHost>> {
    let pattern = args.select.as_deref().map(parse_pattern).transpose()?;
    let all = inventory_hosts(inventory)?;
    let known = all.len();
    let picked: Vec<InventoryHost> = all
        .into_iter()
        .filter(|h| pattern.as_ref().is_none_or(|p| p.matches(&h.candidate)))
        .collect();
    if picked.is_empty() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "no host in the inventory matches (it knows {known} host(s); `fleetctl scan`, \
             `fleetctl fingerprint` and `fleetctl inventory import` add them)"
        )));
    }
    Ok(picked)
}

/// The hosts named, or those `--all` / `--select` pick from the inventory,
/// as SSH names them: the name deploy or fingerprinting used, else the
/// address.
pub fn pick_hosts(args: &HostsArgs, inventory: &Inventory) -> anyhow::Result<Vec<String>> {
    if !args.all && args.select.is_none() {
        return named_hosts(args);
    }
    Ok(picked(args, inventory)?
        .into_iter()
        .map(|h| h.candidate.label().to_string())
        .collect())
}

fn named_hosts(args: &HostsArgs) -> anyhow::Result<Vec<String>> {
    if args.hosts.is_empty() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "which hosts? name them, or pick with --all or --select PATTERN"
        )));
    }
    Ok(args.hosts.clone())
}

/// [`pick_hosts`] with the inventory read on a blocking thread.
pub async fn pick(args: &HostsArgs, ctx: &Context) -> anyhow::Result<Vec<String>> {
    if !args.all && args.select.is_none() {
        return named_hosts(args);
    }
    let (path, args) = (ctx.paths.inventory(), args.clone());
    tokio::task::spawn_blocking(move || pick_hosts(&args, &Inventory::open(&path)?))
        .await
        .context("the inventory reader stopped")?
}

/// The inventory hosts a word names: an address (known or not), or every
/// host whose name it is.
pub fn named(word: &str, hosts: &[InventoryHost]) -> Vec<IpAddr> {
    if let Ok(addr) = word.parse::<IpAddr>() {
        return vec![addr];
    }
    hosts
        .iter()
        .filter(|h| {
            h.candidate
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(word))
                || h.facts
                    .as_ref()
                    .and_then(|f| f.hostname.as_deref())
                    .is_some_and(|n| n.eq_ignore_ascii_case(word))
        })
        .map(|h| h.addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Deployment;

    #[test]
    fn inventory_hosts_merge_scan_facts_deployments_and_tags() {
        let mut inv = Inventory::open_in_memory().unwrap();
        inv.record_deployment(&Deployment {
            address: "127.7.0.10".into(),
            port: 22,
            host: "web1".into(),
            build: None,
            state: AgentState::Failed,
            step: Some("upload".into()),
            error: None,
            updated_at: 1,
        })
        .unwrap();
        let addr: IpAddr = "127.7.0.10".parse().unwrap();
        inv.tag(&[addr], &[("role".into(), "web".into())]).unwrap();
        let all = inventory_hosts(&inv).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].candidate.name.as_deref(), Some("web1"));
        assert_eq!(all[0].candidate.agent, "failed");
        assert_eq!(all[0].candidate.tags["role"], "web");
        let args = |select: &str| HostsArgs {
            hosts: vec![],
            all: false,
            select: Some(select.into()),
        };
        assert_eq!(pick_hosts(&args("agent=failed"), &inv).unwrap(), ["web1"]);
        assert_eq!(pick_hosts(&args("tag.role=web"), &inv).unwrap(), ["web1"]);
        assert_eq!(
            pick_hosts(&args("role_web:&agent_failed"), &inv).unwrap(),
            ["web1"]
        );
        let err = pick_hosts(&args("agent=running"), &inv).unwrap_err();
        assert!(err.downcast_ref::<BadInput>().is_some());
        let err = pick_hosts(&args("web:&"), &inv).unwrap_err();
        assert!(err.downcast_ref::<BadInput>().is_some());
        assert_eq!(named("WEB1", &all), [addr]);
        assert!(named("web2", &all).is_empty());
    }
}
