//! The control plane's own certificate: issued by the fleet CA for the
//! listen address and the configured names, kept in the control dir,
//! reissued at start when missing, for other names, from another CA or
//! past 2/3 of its life, and rotated in place while serving.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use x509_parser::extensions::GeneralName;

use super::{ControlError, ControlPlane, unix_now};
use crate::pki::tls::ReloadableCert;
use crate::pki::{FleetCa, PkiError, write_private};

const CERT_FILE: &str = "server.pem";
const KEY_FILE: &str = "server.key";

/// The certificate being served and when it is due for renewal.
#[derive(Clone)]
pub(super) struct Prepared {
    pub cert: Arc<ReloadableCert>,
    sans: Vec<String>,
    renew_at: i64,
}

/// The names the certificate must carry: the listen address (loopback
/// ones when it listens on every address), the URL's host, the extra names.
fn wanted_sans(
    addr: SocketAddr,
    url: Option<&str>,
    names: &[String],
) -> Result<Vec<String>, ControlError> {
    let mut sans = Vec::new();
    if addr.ip().is_unspecified() {
        sans.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    } else {
        sans.push(addr.ip().to_string());
    }
    if let Some(url) = url {
        let parsed = reqwest::Url::parse(url).map_err(|_| ControlError::BadUrl(url.to_owned()))?;
        let host = parsed
            .host_str()
            .filter(|_| parsed.scheme() == "https")
            .ok_or_else(|| ControlError::BadUrl(url.to_owned()))?;
        // IPv6 hosts come in brackets.
        sans.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    sans.extend(names.iter().cloned());
    let mut seen = BTreeSet::new();
    sans.retain(|s| seen.insert(normalize(s)));
    Ok(sans)
}

fn normalize(name: &str) -> String {
    name.parse::<IpAddr>()
        .map_or_else(|_| name.to_ascii_lowercase(), |ip| ip.to_string())
}

/// Loads the certificate in the control dir when it still fits, else issues one.
pub(super) fn prepare(
    plane: &Arc<ControlPlane>,
    addr: SocketAddr,
) -> Result<Prepared, ControlError> {
    let sans = wanted_sans(addr, plane.settings.url.as_deref(), &plane.settings.names)?;
    sans.clone_into(
        &mut plane
            .own_names
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let dir = &plane.dir;
    let now = unix_now();
    if let Some((cert_pem, key_pem, renew_at)) = usable(dir, &plane.ca, &sans, now) {
        tracing::debug!("reusing the control plane certificate");
        return Ok(Prepared {
            cert: ReloadableCert::new(&cert_pem, &key_pem)?,
            sans,
            renew_at,
        });
    }
    let (cert_pem, key_pem, renew_at) = issue(dir, &plane.ca, &sans, plane.settings.cert_ttl)?;
    Ok(Prepared {
        cert: ReloadableCert::new(&cert_pem, &key_pem)?,
        sans,
        renew_at,
    })
}

/// Reissues the certificate at 2/3 of its life, for as long as it serves.
pub(super) async fn keep_fresh(plane: Arc<ControlPlane>, mut prepared: Prepared) {
    loop {
        let wait = u64::try_from(prepared.renew_at - unix_now()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match issue(
            &plane.dir,
            &plane.ca,
            &prepared.sans,
            plane.settings.cert_ttl,
        )
        .and_then(|(cert, key, renew_at)| {
            prepared.cert.replace(&cert, &key)?;
            Ok(renew_at)
        }) {
            Ok(renew_at) => prepared.renew_at = renew_at,
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the control plane certificate; retrying in a minute");
                prepared.renew_at = unix_now() + 60;
            }
        }
    }
}

fn issue(
    dir: &Path,
    ca: &FleetCa,
    sans: &[String],
    ttl: Duration,
) -> Result<(String, String, i64), ControlError> {
    let (cert, key) = ca.issue_server(sans, ttl)?;
    let write_err = |path: std::path::PathBuf| move |source| PkiError::Write { path, source };
    write_private(&dir.join(KEY_FILE), key.as_bytes()).map_err(write_err(dir.join(KEY_FILE)))?;
    std::fs::write(dir.join(CERT_FILE), &cert.pem).map_err(write_err(dir.join(CERT_FILE)))?;
    let now = unix_now();
    tracing::info!(names = ?sans, expires_at = cert.not_after, "issued the control plane certificate");
    Ok((cert.pem, key, renew_point(now, cert.not_after)))
}

/// Two thirds of the way from `not_before` to `not_after`.
fn renew_point(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// The stored certificate, key and renewal time, when they fit: both
/// files readable, issued by this CA's control plane intermediate (and
/// served with it), for exactly `sans`, before 2/3 of their life.
fn usable(dir: &Path, ca: &FleetCa, sans: &[String], now: i64) -> Option<(String, String, i64)> {
    let cert_pem = std::fs::read_to_string(dir.join(CERT_FILE)).ok()?;
    let key_pem = std::fs::read_to_string(dir.join(KEY_FILE)).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    if !cert_pem
        .trim_end()
        .ends_with(ca.control_ca_pem().trim_end())
    {
        return None;
    }
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.control_ca_pem().as_bytes()).ok()?;
    let ca_cert = ca_pem.parse_x509().ok()?;
    cert.verify_signature(Some(ca_cert.public_key())).ok()?;
    let have: BTreeSet<String> = cert
        .subject_alternative_name()
        .ok()??
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(normalize(d)),
            GeneralName::IPAddress(b) => ip_from_bytes(b).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect();
    let want: BTreeSet<String> = sans.iter().map(|s| normalize(s)).collect();
    let renew_at = renew_point(
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    (have == want && now < renew_at).then_some((cert_pem, key_pem, renew_at))
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_listen_url_and_config() {
        let addr: SocketAddr = "127.4.0.1:8443".parse().unwrap();
        assert_eq!(wanted_sans(addr, None, &[]).unwrap(), ["127.4.0.1"]);
        let sans = wanted_sans(
            addr,
            Some("https://Fleet.example:8443/"),
            &[
                "fleet.example".into(),
                "127.4.0.1".into(),
                "10.0.0.1".into(),
            ],
        )
        .unwrap();
        assert_eq!(sans, ["127.4.0.1", "fleet.example", "10.0.0.1"]);
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(
            wanted_sans(any, None, &[]).unwrap(),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            wanted_sans(addr, Some("https://[::1]:1/"), &[]).unwrap(),
            ["127.4.0.1", "::1"]
        );
        assert!(wanted_sans(addr, Some("not a url"), &[]).is_err());
    }

    #[test]
    fn reused_until_two_thirds_or_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        let sans = vec!["127.4.0.1".to_string()];
        let now = unix_now();
        assert!(
            usable(dir.path(), &ca, &sans, now).is_none(),
            "nothing stored yet"
        );
        let (pem, _, renew_at) = issue(dir.path(), &ca, &sans, Duration::from_mins(5)).unwrap();
        assert!(
            (now + 199..=now + 201).contains(&renew_at),
            "{renew_at} vs {now}"
        );
        let (again, _, _) = usable(dir.path(), &ca, &sans, now).unwrap();
        assert_eq!(again, pem);
        assert!(usable(dir.path(), &ca, &sans, renew_at).is_none(), "due");
        assert!(
            usable(dir.path(), &ca, &["127.4.0.2".into()], now).is_none(),
            "other names"
        );
        let other = tempfile::tempdir().unwrap();
        let other_ca = FleetCa::load_or_create(other.path()).unwrap();
        assert!(
            usable(dir.path(), &other_ca, &sans, now).is_none(),
            "other CA"
        );
    }
}
