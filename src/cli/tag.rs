//! `fleetctl tag HOST... key=value...` and `fleetctl untag HOST... key...`:
//! labels on inventory hosts, which `--select`, the console's filter and
//! `fleetctl inventory`'s groups read.
//!
//! The words name hosts first, then tags: the hosts are the leading words
//! that name one (an address, or a name the inventory knows), the rest are
//! tags (`key=value`, or a bare `key`) or, for untag, keys. With
//! `--select` every word is a tag.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::hosts::{InventoryHost, inventory_hosts, named, parse_pattern};
use super::{BadInput, Context};
use crate::model::tags::{parse_key, parse_tag};
use crate::model::text;
use crate::store::Inventory;

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Hosts (addresses or inventory names), then tags: key=value, or a bare key.
    #[arg(value_name = "HOST... TAG", required = true)]
    words: Vec<String>,
    /// Tag the inventory hosts matching this host pattern (see `deploy --help`);
    /// every word is then a tag.
    #[arg(long, value_name = "PATTERN")]
    select: Option<String>,
}

#[derive(Debug, Args)]
pub struct UntagArgs {
    /// Hosts (addresses or inventory names), then the tag keys to remove.
    #[arg(value_name = "HOST... KEY", required = true)]
    words: Vec<String>,
    /// Untag the inventory hosts matching this host pattern; every word is then a key.
    #[arg(long, value_name = "PATTERN")]
    select: Option<String>,
}

/// Hosts and the words after them.
struct Split<'a> {
    addrs: Vec<IpAddr>,
    rest: &'a [String],
}

fn split<'a>(
    words: &'a [String],
    select: Option<&str>,
    known: &[InventoryHost],
    what: &str,
) -> anyhow::Result<Split<'a>> {
    if let Some(select) = select {
        let pattern = parse_pattern(select)?;
        let addrs: Vec<IpAddr> = known
            .iter()
            .filter(|h| pattern.matches(&h.candidate))
            .map(|h| h.addr)
            .collect();
        if addrs.is_empty() {
            return Err(BadInput::wrap(anyhow::anyhow!(
                "no host in the inventory matches {select:?}"
            )));
        }
        return Ok(Split { addrs, rest: words });
    }
    let mut addrs = Vec::new();
    let mut at = 0;
    for word in words {
        if word.contains('=') {
            break;
        }
        let found = named(word, known);
        if found.is_empty() {
            break;
        }
        addrs.extend(found);
        at += 1;
    }
    if addrs.is_empty() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "{:?} names no host the inventory knows: name hosts by address or by a name \
             `fleetctl scan`, `fingerprint` or `inventory import` recorded, or use --select",
            text::escape(&words[0])
        )));
    }
    if at == words.len() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "no {what} after the hosts (e.g. `fleetctl tag web1 role=web`)"
        )));
    }
    addrs.sort_unstable();
    addrs.dedup();
    Ok(Split {
        addrs,
        rest: &words[at..],
    })
}

pub fn tag(args: &TagArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut inventory = Inventory::open(&ctx.paths.inventory())?;
    let known = inventory_hosts(&inventory)?;
    let Split { addrs, rest } = split(&args.words, args.select.as_deref(), &known, "tags")?;
    let tags = rest
        .iter()
        .map(|t| parse_tag(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BadInput::wrap)?;
    // An address the inventory does not hold yet joins it, as a listed host.
    let new: Vec<(IpAddr, Option<String>)> = addrs
        .iter()
        .filter(|a| !known.iter().any(|h| h.addr == **a))
        .map(|a| (*a, None))
        .collect();
    if !new.is_empty() {
        inventory
            .add_listed("fleetctl tag", &new)
            .context("cannot add the hosts to the inventory")?;
    }
    inventory
        .tag(&addrs, &tags)
        .context("cannot write the tags")?;
    println!("tagged {} host(s)", addrs.len());
    Ok(ExitCode::SUCCESS)
}

pub fn untag(args: &UntagArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut inventory = Inventory::open(&ctx.paths.inventory())?;
    let known = inventory_hosts(&inventory)?;
    let Split { addrs, rest } = split(&args.words, args.select.as_deref(), &known, "keys")?;
    let keys = rest
        .iter()
        .map(|k| parse_key(k.strip_suffix('=').unwrap_or(k)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BadInput::wrap)?;
    let removed = inventory
        .untag(&addrs, &keys)
        .context("cannot remove the tags")?;
    println!("removed {removed} tag(s) from {} host(s)", addrs.len());
    Ok(ExitCode::SUCCESS)
}
