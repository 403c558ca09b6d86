//! `fleetctl config ...`: where things are, and the settings in effect.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::config::DEFAULT_CONFIG_TOML;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file, data dir, log dir and inventory paths.
    Path,
    /// Print the settings in effect (config file merged over the defaults).
    Show,
    /// Print the default config file, commented, to start your own from.
    Default,
}

pub fn run(cmd: &ConfigCommand, ctx: &Context) -> ExitCode {
    match cmd {
        ConfigCommand::Path => {
            let paths = &ctx.paths;
            let state = if paths.config_file.exists() {
                ""
            } else {
                " (not present: built-in defaults apply)"
            };
            println!("config file  {}{state}", paths.config_file.display());
            println!("data dir     {}", paths.data_dir.display());
            println!("log dir      {}", paths.log_dir.display());
            println!("inventory    {}", paths.inventory().display());
        }
        ConfigCommand::Show => print!("{}", ctx.config.to_toml()),
        ConfigCommand::Default => print!("{DEFAULT_CONFIG_TOML}"),
    }
    ExitCode::SUCCESS
}
