//! Helpers for the control plane tests: a control plane on loopback, the
//! real client, and requests built from the shared wire types.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetctl::auth::JoinGrant;
use fleetctl::control::{self, ControlPlane, Settings};
use fleetctl::model::control::{ApiError, RegisterRequest, RegisterResponse};
use fleetctl::pki::tls::ClientIdentity;
use fleetctl::pki::{self, ControlPin, KeyAndCsr};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

/// A control plane running in this process.
pub struct Running {
    pub plane: Arc<ControlPlane>,
    pub url: String,
    /// Trusts the fleet CA; shows no certificate (an operator, an enrolling agent).
    pub client: reqwest::Client,
    pub pin: ControlPin,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), control::ControlError>>>,
}

impl Running {
    /// Starts one on `ip`, port 0, with its keys in `data/control` and its
    /// registry in `data/inventory.sqlite3`.
    pub async fn start(data: &Path, ip: &str, settings: Settings) -> Self {
        let plane = ControlPlane::open(
            &data.join("control"),
            &data.join("inventory.sqlite3"),
            settings,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let (tx, rx) = oneshot::channel();
        let started = control::start(listener, Arc::clone(&plane), async {
            let _ = rx.await;
        })
        .unwrap();
        let client = pki::tls::http_client(&started.ca_pem, Duration::from_secs(10)).unwrap();
        Self {
            plane,
            url: started.url,
            client,
            pin: started.control_pin,
            stop: Some(tx),
            task: Some(started.task),
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub fn operator(&self) -> String {
        self.plane
            .operator_token("test", Duration::from_mins(5))
            .unwrap()
            .0
    }

    /// A join token for `host` vouching for `host` alone.
    pub fn join(&self, host: &str) -> String {
        self.plane
            .join_token(&JoinGrant::new(host), None)
            .unwrap()
            .0
    }

    /// A join token for `host` vouching for `host` and `names`.
    pub fn join_vouching(&self, host: &str, names: &[&str]) -> String {
        let grant = JoinGrant {
            host: host.to_owned(),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            control_pin: None,
        };
        self.plane.join_token(&grant, None).unwrap().0
    }

    /// A client showing `cert_pem` (with its key) to the pinned control
    /// plane: what an agent calls renew and heartbeat with.
    pub fn agent_client(&self, cert_pem: &str, key: &KeyAndCsr) -> reqwest::Client {
        let identity = ClientIdentity {
            cert_pem: cert_pem.to_owned(),
            key_pem: key.key_pem.clone(),
        };
        pki::tls::control_client(
            self.plane.ca_pem(),
            self.pin,
            Some(&identity),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// POSTs `body` (with `bearer` when given); the status and the JSON answer.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> (StatusCode, serde_json::Value) {
        self.post_with(&self.client, path, bearer, body).await
    }

    /// As [`Self::post`], through `client`.
    pub async fn post_with<B: Serialize>(
        &self,
        client: &reqwest::Client,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = client.post(format!("{}{path}", self.url)).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        answer(req).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        answer(req).await
    }

    /// Registers `host` with `addresses` using `join`; panics unless it
    /// works. The agent, with a client showing its certificate.
    pub async fn register(&self, join: &str, host: &str, addresses: &[&str]) -> Enrolled {
        let (req, key) = register_request(join, host, addresses);
        let (status, body) = self.post("/v1/register", None, &req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let reg: RegisterResponse = serde_json::from_value(body).unwrap();
        let client = self.agent_client(&reg.certificate_pem, &key);
        Enrolled { reg, key, client }
    }
}

/// A registered agent as the tests drive it.
pub struct Enrolled {
    pub reg: RegisterResponse,
    pub key: KeyAndCsr,
    /// Shows the agent's certificate to the control plane.
    pub client: reqwest::Client,
}

async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

pub fn register_request(
    join: &str,
    host: &str,
    addresses: &[&str],
) -> (RegisterRequest, KeyAndCsr) {
    let kc = pki::new_key_and_csr(host, &[host.to_owned()]).unwrap();
    (
        RegisterRequest {
            join_token: join.to_owned(),
            csr_pem: kc.csr_pem.clone(),
            hostname: host.to_owned(),
            addresses: addresses.iter().map(|s| (*s).to_owned()).collect(),
            stats_port: 9100,
            agent_version: "0.1.0-test".into(),
        },
        kc,
    )
}

/// The refusal's code, checking the body is an ApiError.
pub fn code(body: &serde_json::Value) -> String {
    let err: ApiError = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not an ApiError ({e}): {body}"));
    assert!(!err.reason.is_empty());
    err.error
}

pub fn parse<T: DeserializeOwned>(body: serde_json::Value) -> T {
    serde_json::from_value(body).unwrap()
}

/// The SANs of a certificate, as text, and whether it chains to `ca_pem`.
pub fn sans_and_chain(cert_pem: &str, ca_pem: &str) -> (Vec<String>, bool) {
    use x509_parser::extensions::GeneralName;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let chains =
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok();
    let sans = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => (*d).to_owned(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    (sans, chains)
}

/// Asserts an answer is a refusal with `status` and the ApiError `want`.
#[track_caller]
pub fn assert_refused(answer: (StatusCode, serde_json::Value), status: StatusCode, want: &str) {
    let (got, body) = answer;
    assert_eq!((got, code(&body).as_str()), (status, want), "{body}");
}
