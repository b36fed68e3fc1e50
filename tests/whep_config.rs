//! A WHEP stream's options as a user writes them in gateway.toml: accepted on a
//! `whep://` source, refused elsewhere, and the token never echoed.

use crate::support;

use std::path::Path;
use std::process::Output;

use support::TempDir;

/// Writes `toml` to `dir/name` and checks it (at debug level: the token must not appear even there).
fn check_config(dir: &Path, name: &str, toml: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    support::check_config(&path, "debug")
}

#[test]
fn whep_options_are_checked_and_the_token_stays_secret() {
    let dir = TempDir::new("whep_config");
    let token = "tok-8c1d2e3f4a5b";
    let valid = format!(
        "[streams.ring]\nsource = \"wheps://api.example.com/v1/devices/x/media/streaming/whep/sessions\"\n\
         bearer_token = \"{token}\"\nmax_session = \"60s\"\nwebrtc_bind = \"0.0.0.0\"\n"
    );
    let output = check_config(dir.path(), "valid.toml", &valid);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(!log.contains(token), "the token leaked: {log}");

    for (name, toml, expected) in [
        (
            "token_on_demo.toml",
            format!("[streams.cam]\nsource = \"demo\"\nbearer_token = \"{token}\"\n"),
            "token_on_demo.toml:3:16: stream cam: `bearer_token`, `max_session`, `webrtc_bind` and `trickle` are only used by whep(s):// sources",
        ),
        (
            "bad_duration.toml",
            "[streams.cam]\nsource = \"whep://h/whep\"\nmax_session = \"sixty\"\n".to_owned(),
            "bad_duration.toml:3:15: stream cam: invalid value: string \"sixty\", expected a duration",
        ),
    ] {
        let output = check_config(dir.path(), name, &toml);
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} must be refused");
        assert!(log.contains(expected), "{name}: {log}");
        assert!(!log.contains(token), "{name}: the token leaked: {log}");
    }
}
