//! `fleetctl tui` as scripts meet it: no terminal, or a theme that is not
//! there or is broken, is bad input (exit 2) with a message that says why.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, stderr};

#[test]
fn without_a_terminal_the_console_says_what_to_use_instead() {
    let env = Env::new();
    // No subcommand means the console.
    for args in [&[][..], &["tui"][..]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("needs a terminal"), "{err}");
        assert!(err.contains("fleetctl scan"), "{err}");
    }
}

#[test]
fn an_unknown_theme_lists_the_ones_there_are() {
    let env = Env::new();
    let out = env.run(&["tui", "--theme", "neon"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("\"neon\""), "{err}");
    for name in ["default", "light", "high-contrast", "catppuccin-mocha"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn a_malformed_user_theme_is_reported_by_name() {
    let env = Env::new();
    let themes = env.dir.path().join("themes");
    std::fs::create_dir_all(&themes).unwrap();
    std::fs::write(themes.join("mine.toml"), "ok = \"greenish\"\n").unwrap();
    // Chosen by the config file this time.
    std::fs::write(env.config_file(), "[tui]\ntheme = \"mine\"\n").unwrap();
    let out = env.run(&["tui"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("theme \"mine\" is malformed"), "{err}");
    assert!(err.contains("greenish"), "{err}");
}
