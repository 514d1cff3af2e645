//! Shared fixtures for the integration tests: temporary trust domains with real
//! certificates on disk and policy files, in-process servers, real openssl peers, and a
//! recording relay. Tests talk over real TCP on loopback.
#![allow(dead_code)]

pub mod flood;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use secsock::{
    Domain, Error, PeerTargetName, Platform, SecureListener, SecureSocket, SecureStream,
    SecurityInfo, SecuritySettings,
};
use tempfile::TempDir;

/// A subject alternative name for a test identity.
#[derive(Clone, Debug)]
pub enum San {
    Dns(&'static str),
    Ip(std::net::IpAddr),
    Uri(String),
    Email(&'static str),
}

impl San {
    fn to_rcgen(&self) -> SanType {
        match self {
            San::Dns(d) => SanType::DnsName(d.to_string().try_into().unwrap()),
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Uri(u) => SanType::URI(u.clone().try_into().unwrap()),
            San::Email(e) => SanType::Rfc822Name(e.to_string().try_into().unwrap()),
        }
    }
}

/// A CA and a directory to issue identities into.
pub struct TrustDomain {
    pub dir: TempDir,
    pub name: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

/// One issued identity with its policy file.
#[derive(Clone, Debug)]
pub struct Host {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub policy: PathBuf,
}

impl Host {
    pub fn platform(&self) -> Arc<Platform> {
        Platform::load(&self.policy)
            .unwrap_or_else(|e| panic!("policy {}: {e}", self.policy.display()))
    }
}

pub fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `dir/policy.toml` naming the given files, plus `extra` TOML.
pub fn write_policy(
    dir: &Path,
    cert: &Path,
    key: &Path,
    anchors: &[&Path],
    extra: &str,
) -> PathBuf {
    let anchors: Vec<String> = anchors
        .iter()
        .map(|a| format!("{:?}", a.display().to_string()))
        .collect();
    let text = format!(
        "[identity]\ncertificate = {:?}\nprivate_key = {:?}\n\n[trust]\nanchors = [{}]\n\n{extra}",
        cert.display().to_string(),
        key.display().to_string(),
        anchors.join(", ")
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl TrustDomain {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        Self {
            dir,
            name: name.to_string(),
            ca_params,
            ca_key,
            ca_pem,
            ca_path,
        }
    }

    /// A CRL of this CA (PEM) that revokes nothing, current until `next_update`.
    pub fn crl(&self, next_update: time::OffsetDateTime) -> String {
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        rcgen::CertificateRevocationListParams {
            this_update: next_update - time::Duration::days(7),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// Issues an identity with `sans` into `<dir>/<label>/` and writes its policy.
    pub fn host(&self, label: &str, sans: &[San]) -> Host {
        self.host_with(label, sans, "", |_| {})
    }

    /// Like [`host`], with extra policy TOML and a hook to adjust the certificate.
    pub fn host_with(
        &self,
        label: &str,
        sans: &[San],
        extra: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Host {
        let key = KeyPair::generate().unwrap();
        let params = host_params(label, sans, adjust);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        self.write_host(label, &cert.pem(), &key.serialize_pem(), extra)
    }

    /// Writes `<dir>/<label>/` with this chain and key, the domain's CA and a policy
    /// naming them (plus `extra` TOML).
    fn write_host(&self, label: &str, chain_pem: &str, key_pem: &str, extra: &str) -> Host {
        let dir = self.dir.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join("host.crt");
        let key_path = dir.join("host.key");
        std::fs::write(&cert_path, chain_pem).unwrap();
        write_private(&key_path, key_pem);
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        let policy = write_policy(&dir, &cert_path, &key_path, &[&ca], extra);
        Host {
            dir,
            cert: cert_path,
            key: key_path,
            ca,
            policy,
        }
    }
}

/// A host certificate's parameters: `sans`, CN `label`, server and client authentication,
/// then `adjust`.
fn host_params(
    label: &str,
    sans: &[San],
    adjust: impl FnOnce(&mut CertificateParams),
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect();
    params.distinguished_name.push(DnType::CommonName, label);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    adjust(&mut params);
    params
}

/// An intermediate CA of a [`TrustDomain`], possibly name-constrained.
pub struct SubCa {
    params: CertificateParams,
    key_pem: String,
    pub pem: String,
}

impl SubCa {
    fn key(&self) -> KeyPair {
        KeyPair::from_pem(&self.key_pem).unwrap()
    }
}

impl TrustDomain {
    /// An intermediate CA named `name`, signed by the domain's CA, whose certificates may
    /// carry only DNS names under `permitted_dns` (none: unconstrained). With `same_key_as`,
    /// it reuses that CA's key (a second certificate for one CA: cross-certification).
    pub fn sub_ca(&self, name: &str, permitted_dns: &[&str], same_key_as: Option<&SubCa>) -> SubCa {
        let key = match same_key_as {
            Some(other) => other.key(),
            None => KeyPair::generate().unwrap(),
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if !permitted_dns.is_empty() {
            params.name_constraints = Some(rcgen::NameConstraints {
                permitted_subtrees: permitted_dns
                    .iter()
                    .map(|d| rcgen::GeneralSubtree::DnsName(d.to_string()))
                    .collect(),
                excluded_subtrees: vec![],
            });
        }
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.ca_params, &self.ca_key))
            .unwrap();
        SubCa {
            params,
            key_pem: key.serialize_pem(),
            pem: cert.pem(),
        }
    }

    /// Issues an identity under `issuer` into `<dir>/<label>/`, its chain file holding the
    /// leaf and the sub-CA; `adjust` may change the leaf (e.g. add raw SANs).
    pub fn host_under(
        &self,
        label: &str,
        issuer: &SubCa,
        sans: &[San],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Host {
        let key = KeyPair::generate().unwrap();
        let cert = host_params(label, sans, adjust)
            .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key()))
            .unwrap();
        let chain = format!("{}{}", cert.pem(), issuer.pem);
        self.write_host(label, &chain, &key.serialize_pem(), "")
    }

    /// The identity of `host` (the same leaf and key) with `issuer` as its chain's
    /// intermediate instead, in `<dir>/<label>/`.
    pub fn same_leaf_under(&self, host: &Host, label: &str, issuer: &SubCa) -> Host {
        let chain = std::fs::read_to_string(&host.cert).unwrap();
        let end = "-----END CERTIFICATE-----\n";
        let leaf = &chain[..chain.find(end).unwrap() + end.len()];
        let key = std::fs::read_to_string(&host.key).unwrap();
        self.write_host(label, &format!("{leaf}{}", issuer.pem), &key, "")
    }
}

/// Hand-built subject alternative names, for names rcgen cannot write.
pub mod raw_san {
    use rcgen::CustomExtension;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n <= 0xFF => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A Kerberos principal-name SAN (id-pkinit-san, RFC 4556) `c1/c2@realm`.
    pub fn kerberos(realm: &str, components: &[&str]) -> Vec<u8> {
        let strings: Vec<u8> = components
            .iter()
            .flat_map(|c| tlv(0x1B, c.as_bytes()))
            .collect();
        let principal = tlv(
            0x30,
            &[tlv(0xA0, &tlv(0x02, &[2])), tlv(0xA1, &tlv(0x30, &strings))].concat(),
        );
        let value = tlv(
            0x30,
            &[
                tlv(0xA0, &tlv(0x1B, realm.as_bytes())),
                tlv(0xA1, &principal),
            ]
            .concat(),
        );
        tlv(
            0xA0,
            &[
                tlv(0x06, &[0x2B, 0x06, 0x01, 0x05, 0x02, 0x02]),
                tlv(0xA0, &value),
            ]
            .concat(),
        )
    }

    /// A dNSName SAN with these exact bytes (rcgen refuses anything but IA5 text).
    pub fn dns_bytes(name: &[u8]) -> Vec<u8> {
        tlv(0x82, name)
    }

    /// The subjectAltName extension holding `general_names`.
    pub fn extension(general_names: &[Vec<u8>]) -> CustomExtension {
        CustomExtension::from_oid_content(&[2, 5, 29, 17], tlv(0x30, &general_names.concat()))
    }
}

/// A server on loopback serving each connection with `handler` on its own thread; each
/// handshake outcome is sent on the returned channel.
pub struct TestServer {
    pub addr: SocketAddr,
    pub outcomes: mpsc::Receiver<Result<SecurityInfo, String>>,
}

pub fn listen(platform: Arc<Platform>, settings: &SecuritySettings) -> SecureListener {
    listen_with_backlog(platform, settings, 128)
}

/// Like [`listen`], with a listen backlog of `backlog`.
pub fn listen_with_backlog(
    platform: Arc<Platform>,
    settings: &SecuritySettings,
    backlog: i32,
) -> SecureListener {
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(settings).unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    socket.listen(backlog).unwrap()
}

pub fn serve<F>(platform: Arc<Platform>, handler: F) -> TestServer
where
    F: Fn(SecureStream) + Send + Sync + 'static,
{
    let listener = listen(platform, &SecuritySettings::new());
    let addr = listener.local_addr().unwrap();
    let (tx, outcomes) = mpsc::channel();
    let handler = Arc::new(handler);
    thread::spawn(move || loop {
        let Ok(pending) = listener.accept_pending() else {
            return;
        };
        let tx = tx.clone();
        let handler = handler.clone();
        thread::spawn(move || match pending.handshake() {
            Ok(stream) => {
                let _ = tx.send(Ok(stream.query_security()));
                handler(stream);
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        });
    });
    TestServer { addr, outcomes }
}

/// Echoes until close_notify, then closes cleanly.
pub fn echo(mut stream: SecureStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.close();
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

pub fn echo_server(platform: Arc<Platform>) -> TestServer {
    serve(platform, echo)
}

impl TestServer {
    /// The next handshake outcome on the server side.
    pub fn outcome(&self) -> Result<SecurityInfo, String> {
        self.outcomes
            .recv_timeout(Duration::from_secs(20))
            .expect("server saw no connection")
    }
}

/// Connects with default settings, expecting `target`.
pub fn connect(
    platform: &Arc<Platform>,
    target: &str,
    addr: SocketAddr,
) -> Result<SecureStream, Error> {
    connect_with(
        platform,
        &SecuritySettings::new(),
        Some(PeerTargetName::parse(target).unwrap()),
        addr,
    )
}

pub fn connect_with(
    platform: &Arc<Platform>,
    settings: &SecuritySettings,
    target: Option<PeerTargetName>,
    addr: SocketAddr,
) -> Result<SecureStream, Error> {
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform.clone())?;
    socket.set_security(settings)?;
    if let Some(t) = target {
        socket.set_peer_target_name(t)?;
    }
    socket.connect(addr)
}

/// FNV-1a, enough to compare large transfers.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Whether this process runs as root, which the calling test needs (`why`: e.g. it
/// creates local accounts). When not, prints that the test is skipped and why, and returns
/// false: the test then returns, passing. CI runs as root, so these tests run there.
pub fn require_root(why: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    // libtest names each test's thread after the test. Written to the standard error
    // directly, past the harness's capture of `eprintln!`, so that the skip shows.
    let test = thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("skipped {test}: it needs root ({why})\n");
    let _ = std::io::stderr().write_all(line.as_bytes()); // one write: one whole line
    false
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn openssl() -> Command {
    Command::new("openssl")
}

/// A running `openssl s_server`, killed on drop.
pub struct OpensslServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub output: Arc<Mutex<String>>,
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openssl s_server` with `args` on a free port; waits until it accepts.
pub fn openssl_server(args: &[&str]) -> OpensslServer {
    let port = free_port();
    let mut child = openssl()
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_server");
    let output = Arc::new(Mutex::new(String::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    for pipe in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        let ready_tx = ready_tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if line.contains("ACCEPT") {
                    let _ = ready_tx.send(());
                }
                output.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("openssl s_server did not start");
    OpensslServer {
        child,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        output,
    }
}

/// Runs `openssl s_client` with `args` against `addr`, writes `input`, and collects
/// stdout until `expect` appears (or the process ends / 15 s pass). Returns (stdout, stderr, exited ok).
pub fn openssl_client(
    addr: SocketAddr,
    args: &[&str],
    input: &[u8],
    expect: &[u8],
) -> (Vec<u8>, String) {
    let mut child = openssl()
        .arg("s_client")
        .args(["-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut out = Vec::new();
    let seen = |out: &[u8]| !expect.is_empty() && contains(out, expect);
    // Until `expect` appears, or s_client ends (its stdout closes), or 15 s pass.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen(&out) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    drop(stdin);
    if !seen(&out) {
        // Let it end at the end of its input, 5 s at most. (Once `expect` appeared there is
        // nothing more to wait for: `-quiet` implies `-ign_eof`, so it would not end.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(chunk) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            out.extend_from_slice(&chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(chunk) = rx.try_recv() {
        out.extend_from_slice(&chunk);
    }
    (out, err_thread.join().unwrap_or_default())
}

/// A TCP relay between a client and `upstream` that records every byte each way.
pub struct Relay {
    pub addr: SocketAddr,
    pub to_server: Arc<Mutex<Vec<u8>>>,
    pub to_client: Arc<Mutex<Vec<u8>>>,
    /// The threads copying each way of each connection, until joined.
    pumps: Arc<Mutex<Vec<thread::JoinHandle<()>>>>,
}

pub fn relay(upstream: SocketAddr) -> Relay {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let to_server = Arc::new(Mutex::new(Vec::new()));
    let to_client = Arc::new(Mutex::new(Vec::new()));
    let pumps: Arc<Mutex<Vec<thread::JoinHandle<()>>>> = Arc::default();
    let (ts, tc, threads) = (to_server.clone(), to_client.clone(), pumps.clone());
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            // Locked before the pumps start: once a test sees their effects, their
            // handles are in the list.
            let mut threads = threads.lock().unwrap();
            threads.push(pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                ts.clone(),
            ));
            threads.push(pump(server, client, tc.clone()));
        }
    });
    Relay {
        addr,
        to_server,
        to_client,
        pumps,
    }
}

impl Relay {
    /// Waits until both ways of every relayed connection have ended (each side closed its
    /// writing half), so that the records are complete.
    pub fn wait_idle(&self) {
        let pumps = std::mem::take(&mut *self.pumps.lock().unwrap());
        for pump in pumps {
            pump.join().expect("a relay thread panicked");
        }
    }
}

/// Copies `from` to `to` on a thread of its own, recording, until `from` ends; then ends
/// `to`'s writing side.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    record: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a relay saw of a secured connection (`up`: client to server, `down`: server to
/// client): a ClientHello first and a TLS handshake record back, nothing but whole TLS
/// records after, and none of `secrets` in clear in either direction.
pub fn assert_only_tls_records(up: &[u8], down: &[u8], secrets: &[&[u8]]) {
    // 0x16 = TLS handshake record, 0x03 0x01 = the record-layer version of a ClientHello.
    assert_eq!(
        &up[..3],
        &[0x16, 0x03, 0x01],
        "the client's first bytes are a TLS ClientHello record"
    );
    assert_eq!(
        down[0], 0x16,
        "the server's first bytes are a TLS handshake record"
    );
    for (direction, bytes) in [("client to server", up), ("server to client", down)] {
        for secret in secrets {
            assert!(
                !contains(bytes, secret),
                "payload visible in clear, {direction}"
            );
        }
        // Whole TLS records only: after the handshake, application data (0x17).
        assert!(
            enforcement_fixtures::tls_records(bytes).is_some(),
            "{direction}: the stream is not whole TLS records"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Streaming helpers and async fixtures (`secsock::tokio`), for tokio_api.rs and
// robustness.rs.

/// [`checksum`] computed piece by piece, for transfers too large to keep in memory:
/// `Fnv::new()` updated with `a` then `b` finishes to `checksum(a ++ b)`.
#[derive(Clone, Copy, Debug)]
pub struct Fnv {
    hash: u64,
    len: u64,
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub fn new() -> Self {
        Self {
            hash: 0xcbf29ce484222325,
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x100000001b3);
        }
        self.len += data.len() as u64;
    }

    /// The checksum so far.
    pub fn finish(&self) -> u64 {
        self.hash
    }

    /// How many bytes went in.
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

/// The bytes of [`pattern`]`(len, seed)`, produced piece by piece.
#[derive(Clone, Debug)]
pub struct PatternStream {
    x: u64,
    remaining: usize,
}

impl PatternStream {
    pub fn new(len: usize, seed: u64) -> Self {
        Self {
            x: seed | 1,
            remaining: len,
        }
    }

    /// Fills the start of `buf` with the next bytes; returns how many (0 at the end).
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.remaining);
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.remaining -= n;
        n
    }
}

/// Servers and clients on the async front end, mirroring the blocking fixtures above.
#[cfg(feature = "tokio")]
pub mod async_fixtures {
    use std::future::Future;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Duration;

    use secsock::{Domain, Error, PeerTargetName, Platform, SecurityInfo, SecuritySettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub use secsock::tokio::{
        SecureListener as AsyncListener, SecureSocket as AsyncSocket, SecureStream as AsyncStream,
    };

    /// A secured async listener on a loopback port.
    pub fn listen_async(
        platform: Arc<Platform>,
        settings: &SecuritySettings,
        backlog: i32,
    ) -> AsyncListener {
        let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform).unwrap();
        socket.set_security(settings).unwrap();
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        socket.listen(backlog).unwrap()
    }

    /// An async server: one task calls [`AsyncListener::accept`] in a loop and records
    /// each outcome (the peer's query result, or the error's text); each secured
    /// connection is served by `handler` on a task of its own.
    pub struct AsyncServer {
        pub addr: SocketAddr,
        outcomes: tokio::sync::mpsc::UnboundedReceiver<Result<SecurityInfo, String>>,
        accept_loop: tokio::task::JoinHandle<()>,
    }

    impl Drop for AsyncServer {
        fn drop(&mut self) {
            self.accept_loop.abort();
        }
    }

    impl AsyncServer {
        /// The next accept outcome (fails the test after 20 s without one).
        pub async fn outcome(&mut self) -> Result<SecurityInfo, String> {
            tokio::time::timeout(Duration::from_secs(20), self.outcomes.recv())
                .await
                .expect("the server saw no connection within 20 s")
                .expect("the accept loop ended")
        }

        /// An outcome already recorded, if any (does not wait).
        pub fn try_outcome(&mut self) -> Option<Result<SecurityInfo, String>> {
            self.outcomes.try_recv().ok()
        }

        /// Whether the accept loop is still running (it never stops on its own).
        pub fn is_accepting(&self) -> bool {
            !self.accept_loop.is_finished()
        }
    }

    /// Serves `listener` with `handler`; see [`AsyncServer`].
    pub fn serve_async<F, Fut>(listener: AsyncListener, handler: F) -> AsyncServer
    where
        F: Fn(AsyncStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let accept_loop = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let _ = tx.send(Ok(stream.query_security()));
                        tokio::spawn(handler(stream));
                    }
                    Err(e) => {
                        // A peer's failure is that connection's only: keep accepting. (Back
                        // off a little on I/O errors, which may be the listener's own.)
                        let io = matches!(e, Error::Io(_));
                        let _ = tx.send(Err(e.to_string()));
                        if io {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
        });
        AsyncServer {
            addr,
            outcomes,
            accept_loop,
        }
    }

    /// Echoes until close_notify, then closes cleanly.
    pub async fn echo_async(mut stream: AsyncStream) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => {
                    let _ = stream.close().await;
                    return;
                }
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// An async echo server with default settings.
    pub fn echo_server_async(platform: Arc<Platform>) -> AsyncServer {
        serve_async(
            listen_async(platform, &SecuritySettings::new(), 128),
            echo_async,
        )
    }

    /// Connects (async) with default settings, expecting `target`.
    pub async fn connect_async(
        platform: &Arc<Platform>,
        target: &str,
        addr: SocketAddr,
    ) -> Result<AsyncStream, Error> {
        connect_async_with(
            platform,
            &SecuritySettings::new(),
            Some(PeerTargetName::parse(target).unwrap()),
            addr,
        )
        .await
    }

    pub async fn connect_async_with(
        platform: &Arc<Platform>,
        settings: &SecuritySettings,
        target: Option<PeerTargetName>,
        addr: SocketAddr,
    ) -> Result<AsyncStream, Error> {
        let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform.clone())?;
        socket.set_security(settings)?;
        if let Some(t) = target {
            socket.set_peer_target_name(t)?;
        }
        socket.connect(addr).await
    }
}

// ---------------------------------------------------------------------------------------
// Enforcement fixtures (enforcement.rs, enforcement_tokio.rs): secured servers that report
// every TCP connection they accepted with its typed outcome, plain (not secsock) TCP
// servers that record every byte they received per connection, an active relay that
// rewrites or answers a client's first flight, and a TLS record splitter to tell what
// crossed the wire.

/// Fixtures for the enforcement tests (blocking API and plain std peers).
pub mod enforcement_fixtures {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::sync::{mpsc, Arc, Condvar, Mutex};
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use secsock::{
        Domain, Error, InfoFlags, NegotiationError, OptionFlags, PeerTargetName, Platform,
        SecureListener, SecureSocket, SecureStream, SecurityFlags, SecurityInfo, SecuritySettings,
    };

    use super::{contains, San, TrustDomain};

    /// What a secured server made of one accepted TCP connection.
    #[derive(Debug)]
    pub struct Accepted {
        /// The client's address.
        pub peer: SocketAddr,
        /// The query result of the stream the application got, or why it got none.
        pub result: Result<SecurityInfo, Error>,
    }

    /// The clients a server accepted, in accept order; a test waits on it for the server's
    /// accept thread.
    #[derive(Default)]
    pub(crate) struct AcceptLog {
        peers: Mutex<Vec<SocketAddr>>,
        grew: Condvar,
    }

    impl AcceptLog {
        pub(crate) fn push(&self, peer: SocketAddr) {
            self.peers.lock().unwrap().push(peer);
            self.grew.notify_all();
        }
    }

    /// Connects a probe to `addr` and waits until the server has accepted it (`log`
    /// lists the server's connections in accept order): every connection made before the
    /// probe has then been accepted too. Returns those, without earlier probes.
    pub(crate) fn settle(
        addr: SocketAddr,
        log: &AcceptLog,
        probes: &Mutex<Vec<SocketAddr>>,
    ) -> Vec<SocketAddr> {
        let probe = TcpStream::connect(addr).expect("probe connection");
        let me = probe.local_addr().unwrap();
        probes.lock().unwrap().push(me);
        let (peers, wait) = log
            .grew
            .wait_timeout_while(log.peers.lock().unwrap(), Duration::from_secs(5), |peers| {
                !peers.contains(&me)
            })
            .unwrap();
        assert!(
            !wait.timed_out(),
            "the server did not accept a probe within 5 s"
        );
        let at = peers.iter().position(|a| *a == me).unwrap();
        let probes = probes.lock().unwrap();
        peers[..at]
            .iter()
            .filter(|a| !probes.contains(a))
            .copied()
            .collect()
    }

    /// A secured listener served on threads: each accepted connection is handshaked on its
    /// own thread (`accept_pending` + `handshake`), its outcome recorded with the client's
    /// address, and a stream the application gets is given to the handler.
    pub struct ListenerServer {
        pub addr: SocketAddr,
        /// The listener, to change its peer target names while it serves.
        pub listener: Arc<SecureListener>,
        accepted: Arc<AcceptLog>,
        probes: Mutex<Vec<SocketAddr>>,
        outcomes: mpsc::Receiver<Accepted>,
    }

    /// Serves `listener`; see [`ListenerServer`].
    pub fn serve_listener<F>(listener: SecureListener, handler: F) -> ListenerServer
    where
        F: Fn(SecureStream) + Send + Sync + 'static,
    {
        let listener = Arc::new(listener);
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AcceptLog::default());
        let (tx, outcomes) = mpsc::channel();
        let handler = Arc::new(handler);
        {
            let listener = listener.clone();
            let accepted = accepted.clone();
            thread::spawn(move || loop {
                let Ok(pending) = listener.accept_pending() else {
                    return;
                };
                let peer = pending.peer_addr();
                accepted.push(peer);
                let (tx, handler) = (tx.clone(), handler.clone());
                thread::spawn(move || match pending.handshake() {
                    Ok(stream) => {
                        let result = Ok(stream.query_security());
                        let _ = tx.send(Accepted { peer, result });
                        handler(stream);
                    }
                    Err(e) => {
                        let _ = tx.send(Accepted {
                            peer,
                            result: Err(e),
                        });
                    }
                });
            });
        }
        ListenerServer {
            addr,
            listener,
            accepted,
            probes: Mutex::default(),
            outcomes,
        }
    }

    impl ListenerServer {
        /// The next outcome of a connection the test made (fails after 20 s without one).
        pub fn outcome(&self) -> Accepted {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let accepted = self
                    .outcomes
                    .recv_timeout(left)
                    .expect("the server saw no connection within 20 s");
                if !self.probes.lock().unwrap().contains(&accepted.peer) {
                    return accepted;
                }
            }
        }

        /// Every TCP connection the server has accepted so far, in order (exact: a probe
        /// connection proves that nothing made before now is still in the backlog).
        pub fn connections(&self) -> Vec<SocketAddr> {
            settle(self.addr, &self.accepted, &self.probes)
        }
    }

    /// One connection to a [`PlainServer`], as its behaviour sees it: whatever it reads is
    /// recorded.
    pub struct PlainConnection {
        stream: TcpStream,
        received: Arc<Mutex<Vec<u8>>>,
    }

    impl PlainConnection {
        /// Sends `bytes` (errors ignored: the client may be gone).
        pub fn say(&mut self, bytes: &[u8]) {
            let _ = self.stream.write_all(bytes);
        }

        /// Reads the client's first bytes: a whole TLS record if they start one, else what
        /// one read returns. Empty if the client closed first.
        pub fn read_first(&mut self) -> Vec<u8> {
            let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
            let first = read_first_flight(&mut self.stream);
            self.received.lock().unwrap().extend_from_slice(&first);
            first
        }

        /// Reads and records until the client closes (or 10 s pass).
        pub fn read_to_end(&mut self) {
            let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = [0u8; 16384];
            while let Ok(n) = self.stream.read(&mut buf) {
                if n == 0 {
                    return;
                }
                self.received.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    }

    /// The client's first flight on `stream`: a whole TLS record if its first byte starts a
    /// handshake record, else what one read returns.
    pub(crate) fn read_first_flight(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let complete = match got.as_slice() {
                [] => false,
                [0x16, _, _, hi, lo, ..] => {
                    got.len() >= 5 + usize::from(u16::from_be_bytes([*hi, *lo]))
                }
                [0x16, ..] => false,
                _ => true,
            };
            if complete {
                return got;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// What a [`PlainServer`] received on one connection.
    #[derive(Debug, Clone)]
    pub struct Received {
        pub peer: SocketAddr,
        pub bytes: Vec<u8>,
    }

    struct Served {
        peer: SocketAddr,
        received: Arc<Mutex<Vec<u8>>>,
        /// The connection's thread, until a test joined it.
        thread: Option<JoinHandle<()>>,
    }

    /// A plain TCP server (not secsock) on loopback, running a behaviour on each connection
    /// (on its own thread) and recording every byte it received, per connection.
    pub struct PlainServer {
        pub addr: SocketAddr,
        served: Arc<Mutex<Vec<Served>>>,
        accepted: Arc<AcceptLog>,
        probes: Mutex<Vec<SocketAddr>>,
    }

    /// Starts a [`PlainServer`] whose connections run `behaviour`; a connection is closed
    /// when its behaviour returns.
    pub fn plain_server<F>(behaviour: F) -> PlainServer
    where
        F: Fn(&mut PlainConnection) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let served: Arc<Mutex<Vec<Served>>> = Arc::default();
        let accepted = Arc::new(AcceptLog::default());
        let behaviour = Arc::new(behaviour);
        let (list, log) = (served.clone(), accepted.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let received = Arc::new(Mutex::new(Vec::new()));
                let behaviour = behaviour.clone();
                let thread = {
                    let received = received.clone();
                    // The connection closes when its behaviour returns.
                    thread::spawn(move || behaviour(&mut PlainConnection { stream, received }))
                };
                list.lock().unwrap().push(Served {
                    peer,
                    received,
                    thread: Some(thread),
                });
                log.push(peer);
            }
        });
        PlainServer {
            addr,
            served,
            accepted,
            probes: Mutex::default(),
        }
    }

    impl PlainServer {
        /// Every connection the server accepted so far (exactly: see
        /// [`ListenerServer::connections`]), each once it ended, with what it received.
        pub fn connections(&self) -> Vec<Received> {
            let peers = settle(self.addr, &self.accepted, &self.probes);
            peers
                .into_iter()
                .map(|peer| {
                    let (thread, received) = {
                        let mut served = self.served.lock().unwrap();
                        let s = served.iter_mut().find(|s| s.peer == peer).unwrap();
                        (s.thread.take(), s.received.clone())
                    };
                    // Its behaviour ends at the client's close, or at its reads' 10 s timeout.
                    if let Some(thread) = thread {
                        thread.join().expect("the connection's behaviour panicked");
                    }
                    let bytes = received.lock().unwrap().clone();
                    Received { peer, bytes }
                })
                .collect()
        }
    }

    /// What an [`active_relay`] does with a client's first flight.
    pub enum FirstFlight {
        /// Forwards these bytes to the server instead, then relays both ways.
        Forward(Vec<u8>),
        /// Never forwards anything: answers the client with these bytes, then only
        /// records what the client sends until it leaves.
        Answer(Vec<u8>),
        /// Never forwards anything: resets the connection (a forged TCP reset).
        Reset,
    }

    /// A man in the middle between clients and `upstream`: it decides what becomes of each
    /// connection's first client flight, and records every byte it saw from the client
    /// (as sent, before any rewrite) and every byte it sent to the client.
    pub struct ActiveRelay {
        pub addr: SocketAddr,
        pub from_client: Arc<Mutex<Vec<u8>>>,
        pub to_client: Arc<Mutex<Vec<u8>>>,
        /// One thread per relayed connection, until joined.
        connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }

    /// Starts an [`ActiveRelay`] to `upstream`.
    pub fn active_relay<F>(upstream: SocketAddr, first_flight: F) -> ActiveRelay
    where
        F: Fn(Vec<u8>) -> FirstFlight + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let from_client = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let first_flight = Arc::new(first_flight);
        let (fc, tc, threads) = (from_client.clone(), to_client.clone(), connections.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let (fc, tc) = (fc.clone(), tc.clone());
                let first_flight = first_flight.clone();
                // Locked before the thread starts: once a test sees its effects, its
                // handle is in the list.
                let mut threads = threads.lock().unwrap();
                threads.push(thread::spawn(move || {
                    relay_one(&mut client, upstream, &*first_flight, fc, tc)
                }));
            }
        });
        ActiveRelay {
            addr,
            from_client,
            to_client,
            connections,
        }
    }

    fn relay_one(
        client: &mut TcpStream,
        upstream: SocketAddr,
        first_flight: &(dyn Fn(Vec<u8>) -> FirstFlight + Send + Sync),
        from_client: Arc<Mutex<Vec<u8>>>,
        to_client: Arc<Mutex<Vec<u8>>>,
    ) {
        let Ok(mut server) = TcpStream::connect(upstream) else {
            return;
        };
        let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
        let first = read_first_flight(client);
        from_client.lock().unwrap().extend_from_slice(&first);
        match first_flight(first) {
            FirstFlight::Forward(bytes) => {
                let _ = server.write_all(&bytes);
                let back = {
                    let (server, client) =
                        (server.try_clone().unwrap(), client.try_clone().unwrap());
                    thread::spawn(move || copy_recorded(server, client, to_client))
                };
                copy_recorded(client.try_clone().unwrap(), server, from_client);
                let _ = back.join();
            }
            FirstFlight::Answer(bytes) => {
                let _ = client.write_all(&bytes);
                to_client.lock().unwrap().extend_from_slice(&bytes);
                let mut buf = [0u8; 16384];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    from_client.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
            }
            FirstFlight::Reset => {
                let _ = socket2::SockRef::from(&*client).set_linger(Some(Duration::ZERO));
                let _ = server.shutdown(Shutdown::Both);
            }
        }
    }

    /// Copies `from` to `to`, recording, until `from` ends; then ends `to`'s writing side.
    fn copy_recorded(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }

    impl ActiveRelay {
        /// Waits until every relayed connection has ended (both sides closed, or a read
        /// timed out after 10 s), so that the records are complete.
        pub fn wait_idle(&self) {
            let threads = std::mem::take(&mut *self.connections.lock().unwrap());
            for thread in threads {
                thread.join().expect("a relay thread panicked");
            }
        }
    }

    /// Splits `bytes` into TLS records `(content type, fragment)`; `None` unless they are a
    /// sequence of whole records with TLS record headers.
    pub fn tls_records(bytes: &[u8]) -> Option<Vec<(u8, &[u8])>> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let [kind, 0x03, _, hi, lo, ..] = *rest else {
                return None;
            };
            let end = 5 + usize::from(u16::from_be_bytes([hi, lo]));
            if !(0x14..=0x17).contains(&kind) || rest.len() < end {
                return None;
            }
            records.push((kind, &rest[5..end]));
            rest = &rest[end..];
        }
        Some(records)
    }

    /// A plain TCP client that connects to `addr` and, before sending anything, closes with a
    /// TCP reset (SO_LINGER 0).
    pub fn connect_and_reset(addr: SocketAddr) {
        let doomed = TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&doomed)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// A secured socket with `settings` connecting to `addr` from the local address `from`
    /// (any loopback address works on Linux: all of 127/8 is local).
    pub fn connect_from(
        platform: &Arc<Platform>,
        settings: &SecuritySettings,
        target: Option<PeerTargetName>,
        from: IpAddr,
        addr: SocketAddr,
    ) -> Result<SecureStream, Error> {
        let mut socket = SecureSocket::with_platform(Domain::IPV4, platform.clone())?;
        socket.set_security(settings)?;
        socket.bind(SocketAddr::new(from, 0))?;
        if let Some(t) = target {
            socket.set_peer_target_name(t)?;
        }
        socket.connect(addr)
    }

    // Scenario pieces shared by enforcement.rs and enforcement_tokio.rs.

    /// What the application would send; it must never reach a peer in clear unless clear text
    /// was allowed.
    pub const PAYLOAD: &[u8] = b"PAYLOAD 5f1e: the application's secret";
    /// What a secured server's application would send back.
    pub const SERVER_PAYLOAD: &[u8] = b"SERVER PAYLOAD 9c42";
    /// What a server's application says first to a client that waits for it.
    pub const GREETING: &[u8; 31] = b"220 server.example.test ready\r\n";
    pub const FROM_127_0_0_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    pub const FROM_127_0_0_1: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    pub fn allow_insecure() -> SecuritySettings {
        SecuritySettings::new().with_flags(SecurityFlags::ALLOW_INSECURE)
    }

    pub fn target(name: &str) -> Option<PeerTargetName> {
        Some(PeerTargetName::parse(name).unwrap())
    }

    /// A trust domain with a server and a client identity.
    pub struct Example {
        pub domain: TrustDomain,
        pub server: Arc<Platform>,
        pub client: Arc<Platform>,
    }

    pub fn example(server_policy: &str) -> Example {
        let domain = TrustDomain::new("example.test");
        let server = domain
            .host_with(
                "server",
                &[San::Dns("server.example.test")],
                server_policy,
                |_| {},
            )
            .platform();
        let client = domain
            .host("client", &[San::Dns("client.example.test")])
            .platform();
        Example {
            domain,
            server,
            client,
        }
    }

    /// Asserts a connection in clear text: no flag, no identity, and `reason` as the why.
    pub fn assert_clear(info: &SecurityInfo, reason: impl Fn(&NegotiationError) -> bool) {
        assert_eq!(info.flags, InfoFlags::empty(), "{info}");
        assert!(!info.is_secured() && !info.is_encrypted());
        assert!(info.peer_machine.is_none(), "{info}");
        let why = info
            .negotiation_error
            .as_ref()
            .expect("a connection in clear says why");
        assert!(reason(why), "unexpected reason: {why:?}");
    }

    pub fn assert_secured(info: &SecurityInfo) {
        assert_eq!(
            info.flags,
            InfoFlags::SECURED | InfoFlags::ENCRYPTED,
            "{info}"
        );
        assert_eq!(info.negotiation_error, None, "{info}");
    }

    /// Asserts what a plain server received on a connection the client gave up: TLS records
    /// only, a ClientHello first and at most an alert after it; never application data, never
    /// the payload.
    pub fn assert_only_a_client_hello(bytes: &[u8]) {
        assert!(!contains(bytes, PAYLOAD), "the payload reached the server");
        let records = tls_records(bytes).unwrap_or_else(|| {
            panic!(
                "not whole TLS records: {:02x?}",
                &bytes[..bytes.len().min(32)]
            )
        });
        let (kind, hello) = records.first().expect("the server received nothing");
        assert_eq!(*kind, 0x16, "the first record is a handshake record");
        assert_eq!(hello.first(), Some(&0x01), "it carries a ClientHello");
        for (kind, _) in &records[1..] {
            assert_eq!(
                *kind, 0x15,
                "after the ClientHello, at most an alert: {records:02x?}"
            );
        }
    }

    /// A legacy server that greets first, then reads until the client leaves.
    pub fn speaks_first(connection: &mut PlainConnection) {
        connection.say(b"220 ready\r\n");
        connection.read_to_end();
    }

    /// A legacy server that hangs up, without a byte, on a client whose first bytes are a TLS
    /// record; anything else it reads to the end.
    pub fn hangs_up_on_tls(connection: &mut PlainConnection) {
        if connection.read_first().first() != Some(&0x16) {
            connection.read_to_end();
        }
    }

    /// A trust domain with a server and two client principals, alice and bob.
    pub struct Principals {
        pub domain: TrustDomain,
        pub server: Arc<Platform>,
        pub alice: Arc<Platform>,
        pub bob: Arc<Platform>,
    }

    pub fn alice_and_bob() -> Principals {
        let domain = TrustDomain::new("example.test");
        Principals {
            server: domain
                .host("server", &[San::Dns("server.example.test")])
                .platform(),
            alice: domain
                .host("alice", &[San::Dns("alice.example.test")])
                .platform(),
            bob: domain
                .host("bob", &[San::Dns("bob.example.test")])
                .platform(),
            domain,
        }
    }

    pub fn name(text: &str) -> PeerTargetName {
        PeerTargetName::parse(text).unwrap()
    }

    pub fn optional_name() -> SecuritySettings {
        SecuritySettings::new().with_options(OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION)
    }

    pub fn skip_enforcement() -> SecuritySettings {
        SecuritySettings::new().with_options(OptionFlags::SKIP_ENFORCEMENT)
    }
}

/// The async counterparts of [`enforcement_fixtures`].
#[cfg(feature = "tokio")]
pub mod async_enforcement_fixtures {
    use std::future::Future;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use secsock::{Domain, Error, PeerTargetName, Platform, SecuritySettings};
    use tokio::sync::watch;

    use super::async_fixtures::{AsyncListener, AsyncSocket, AsyncStream};
    use super::enforcement_fixtures::Accepted;

    /// An async secured listener served by one task: each accepted connection is
    /// handshaked on a task of its own (`accept_pending` + `handshake`), its outcome
    /// recorded with the client's address, and a stream the application gets is given to
    /// the handler.
    pub struct AsyncListenerServer {
        pub addr: SocketAddr,
        /// The listener, to change its peer target names while it serves.
        pub listener: Arc<AsyncListener>,
        /// The clients accepted, in accept order.
        accepted: Arc<watch::Sender<Vec<SocketAddr>>>,
        probes: Mutex<Vec<SocketAddr>>,
        outcomes: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
        accept_loop: tokio::task::JoinHandle<()>,
    }

    impl Drop for AsyncListenerServer {
        fn drop(&mut self) {
            self.accept_loop.abort();
        }
    }

    /// Serves `listener`; see [`AsyncListenerServer`].
    pub fn serve_async_listener<F, Fut>(listener: AsyncListener, handler: F) -> AsyncListenerServer
    where
        F: Fn(AsyncStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = Arc::new(listener);
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(watch::Sender::new(Vec::new()));
        let (tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let handler = Arc::new(handler);
        let accept_loop = {
            let (listener, accepted) = (listener.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok(pending) = listener.accept_pending().await {
                    let peer = pending.peer_addr();
                    accepted.send_modify(|peers| peers.push(peer));
                    let (tx, handler) = (tx.clone(), handler.clone());
                    tokio::spawn(async move {
                        match pending.handshake().await {
                            Ok(stream) => {
                                let result = Ok(stream.query_security());
                                let _ = tx.send(Accepted { peer, result });
                                handler(stream).await;
                            }
                            Err(e) => {
                                let _ = tx.send(Accepted {
                                    peer,
                                    result: Err(e),
                                });
                            }
                        }
                    });
                }
            })
        };
        AsyncListenerServer {
            addr,
            listener,
            accepted,
            probes: Mutex::default(),
            outcomes,
            accept_loop,
        }
    }

    impl AsyncListenerServer {
        /// The next outcome of a connection the test made (fails after 20 s without one).
        pub async fn outcome(&mut self) -> Accepted {
            loop {
                let accepted = tokio::time::timeout(Duration::from_secs(20), self.outcomes.recv())
                    .await
                    .expect("the server saw no connection within 20 s")
                    .expect("the accept loop ended");
                if !self.probes.lock().unwrap().contains(&accepted.peer) {
                    return accepted;
                }
            }
        }

        /// Every TCP connection the server has accepted so far, in order (exact, as
        /// [`super::enforcement_fixtures::ListenerServer::connections`]).
        pub async fn connections(&self) -> Vec<SocketAddr> {
            let probe = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            let me = probe.local_addr().unwrap();
            self.probes.lock().unwrap().push(me);
            let mut accepted = self.accepted.subscribe();
            let peers = tokio::time::timeout(
                Duration::from_secs(5),
                accepted.wait_for(|peers| peers.contains(&me)),
            )
            .await
            .expect("the server did not accept a probe within 5 s")
            .expect("the accept loop ended");
            let at = peers.iter().position(|a| *a == me).unwrap();
            let probes = self.probes.lock().unwrap();
            peers[..at]
                .iter()
                .filter(|a| !probes.contains(a))
                .copied()
                .collect()
        }
    }

    /// An async secured socket with `settings` connecting to `addr` from the local address
    /// `from`.
    pub async fn connect_async_from(
        platform: &Arc<Platform>,
        settings: &SecuritySettings,
        target: Option<PeerTargetName>,
        from: IpAddr,
        addr: SocketAddr,
    ) -> Result<AsyncStream, Error> {
        let mut socket = AsyncSocket::with_platform(Domain::IPV4, platform.clone())?;
        socket.set_security(settings)?;
        socket.bind(SocketAddr::new(from, 0))?;
        if let Some(t) = target {
            socket.set_peer_target_name(t)?;
        }
        socket.connect(addr).await
    }
}

// ---------------------------------------------------------------------------------------
// User-authentication fixtures (user_authentication.rs, user_authentication_tokio.rs,
// impersonation_e2e.rs): users files with fast verifiers, user certificates, a raw rustls
// peer speaking the user-authentication frames (for the relay attacker), and local accounts.

/// Fixtures for the user-authentication step and for impersonating its users.
pub mod user_fixtures {
    use std::io::{self, Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Duration;

    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConnection, RootCertStore, ServerConnection, StreamOwned};
    use secsock::scram::Verifier;

    use super::{pattern, Host, San, TrustDomain};

    /// PBKDF2 iterations of test verifiers: the protocol's minimum, so a login costs little
    /// (an unknown user's decoy still asks for the default, 600,000).
    pub const TEST_ITERATIONS: u32 = 4096;

    /// The user-authentication ALPN protocol (the wire contract of `userauth`).
    pub const USER_ALPN: &[u8] = b"secsock-user/1";

    /// Frame types of the user-authentication step.
    pub const HELLO: u8 = 1;
    pub const CHALLENGE: u8 = 2;
    pub const RESPONSE: u8 = 3;
    pub const SUCCESS: u8 = 4;
    pub const FAILURE: u8 = 5;

    /// Policy TOML for `[users]` with the verifiers in `users.toml` beside the policy and
    /// `authentication` = `off`, `optional` or `required`.
    pub fn users_section(authentication: &str) -> String {
        format!("[users]\nfile = \"users.toml\"\nauthentication = \"{authentication}\"\n")
    }

    /// The users file a host's `[users]` section (from [`users_section`]) names.
    pub fn users_file(host: &Host) -> PathBuf {
        host.dir.join("users.toml")
    }

    /// Adds (or replaces) `name@domain` with `password` to the users file `file`, with a
    /// [`TEST_ITERATIONS`] verifier.
    pub fn add_test_user(file: &Path, name: &str, domain: &str, password: &str) {
        let salt = pattern(16, super::checksum(name.as_bytes()));
        let verifier = Verifier::new(password, &salt, TEST_ITERATIONS).unwrap();
        let key = secsock::users::user_key(name, domain);
        secsock::users::add_user(file, &key, verifier, &|buf: &mut [u8]| {
            buf.copy_from_slice(&pattern(buf.len(), 0x5ec5))
        })
        .unwrap();
    }

    /// A user certificate chain (leaf only) and its key.
    pub struct UserCert {
        pub chain: Vec<CertificateDer<'static>>,
        pub key: PrivateKeyDer<'static>,
    }

    impl UserCert {
        pub fn key(&self) -> PrivateKeyDer<'static> {
            self.key.clone_key()
        }
    }

    impl TrustDomain {
        /// A user certificate for client authentication with `sans`, issued by this CA.
        pub fn user_certificate(&self, sans: &[San]) -> UserCert {
            self.user_certificate_with(sans, |_| {})
        }

        /// Like [`TrustDomain::user_certificate`], with a hook to adjust the certificate.
        pub fn user_certificate_with(
            &self,
            sans: &[San],
            adjust: impl FnOnce(&mut CertificateParams),
        ) -> UserCert {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = sans.iter().map(San::to_rcgen).collect();
            params
                .distinguished_name
                .push(DnType::CommonName, "test user");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            adjust(&mut params);
            let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
            let cert = params.signed_by(&key, &issuer).unwrap();
            UserCert {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            }
        }
    }

    impl Host {
        /// This host's certificate chain and key, for a raw rustls peer.
        pub fn credentials(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
            let chain = CertificateDer::pem_file_iter(&self.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (chain, PrivateKeyDer::from_pem_file(&self.key).unwrap())
        }

        /// The trust domain's CA as a rustls root store.
        pub fn roots(&self) -> Arc<RootCertStore> {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            Arc::new(roots)
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// A plain rustls (not secsock) TLS 1.3 client with `host`'s certificate, offering
    /// `alpn`, connected to `addr` as `server_name` with the handshake done.
    pub fn raw_tls_client(
        host: &Host,
        server_name: &str,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let (chain, key) = host.credentials();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(host.roots())
            .with_client_auth_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// A plain rustls TLS 1.3 server configuration with `host`'s certificate, requiring a
    /// client certificate under the trust domain's CA, selecting `alpn`.
    pub fn raw_tls_server_config(host: &Host, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let (chain, key) = host.credentials();
        let clients =
            rustls::server::WebPkiClientVerifier::builder_with_provider(host.roots(), provider())
                .build()
                .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A connection's RFC 9266 `tls-exporter` channel binding.
    pub fn channel_binding<D>(conn: &rustls::ConnectionCommon<D>) -> [u8; 32] {
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(b""))
            .unwrap()
    }

    /// Reads one user-authentication frame: (type, payload).
    pub fn read_user_frame(io: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; 3];
        io.read_exact(&mut header)?;
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes([header[1], header[2]]))];
        io.read_exact(&mut payload)?;
        Ok((header[0], payload))
    }

    /// Writes one user-authentication frame and flushes it.
    pub fn write_user_frame(io: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![kind];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(payload);
        io.write_all(&frame)?;
        io.flush()
    }

    /// A raw SCRAM client logs in as `user` (the SCRAM name exactly as sent) with
    /// `password` on a fresh connection from 127.0.0.1, calls `responded` once its answer
    /// to the challenge is sent, and returns the type of the server's verdict frame.
    pub fn raw_login(
        client: &Host,
        addr: SocketAddr,
        user: &str,
        password: &str,
        responded: impl FnOnce(),
    ) -> u8 {
        let mut tls = raw_tls_client(client, "server.example.test", addr, &[USER_ALPN]).unwrap();
        let binding = channel_binding(&tls.conn);
        let random = |buf: &mut [u8]| buf.copy_from_slice(&pattern(buf.len(), 17));
        let mut scram = secsock::scram::Client::new(user, password, &binding, &random).unwrap();
        let hello = hello_payload("SCRAM-SHA-256-PLUS", scram.client_first().as_bytes());
        write_user_frame(&mut tls, HELLO, &hello).unwrap();
        let (kind, payload) = read_user_frame(&mut tls).unwrap();
        if kind != CHALLENGE {
            return kind;
        }
        let response = scram
            .handle_server_first(&String::from_utf8(payload).unwrap())
            .unwrap();
        write_user_frame(&mut tls, RESPONSE, response.as_bytes()).unwrap();
        responded();
        read_user_frame(&mut tls).unwrap().0
    }

    /// The client nonce of a SCRAM HELLO (`...,r=NONCE`).
    pub fn client_nonce(hello: &[u8]) -> String {
        let text = String::from_utf8_lossy(&hello[1 + usize::from(hello[0])..]).into_owned();
        text.rsplit_once("r=").unwrap().1.to_string()
    }

    /// A fake server's move: reads the HELLO and answers it with a CHALLENGE of
    /// `iterations`.
    pub fn challenge_with(tls: &mut (impl Read + Write), iterations: u64) {
        let (_, hello) = read_user_frame(tls).unwrap();
        let challenge = format!(
            "r={}FAKESERVERNONCE,s=AAAAAAAAAAAAAAAAAAAAAA==,i={iterations}",
            client_nonce(&hello)
        );
        write_user_frame(tls, CHALLENGE, challenge.as_bytes()).unwrap();
    }

    /// A HELLO payload: the mechanism's length and name, then its data.
    pub fn hello_payload(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut payload = vec![mechanism.len() as u8];
        payload.extend_from_slice(mechanism.as_bytes());
        payload.extend_from_slice(data);
        payload
    }

    /// What a [`user_auth_relay`] saw on its one connection.
    #[derive(Debug, Default, Clone)]
    pub struct RelayReport {
        /// The types of the frames the victim sent, in order.
        pub from_victim: Vec<u8>,
        /// The types of the frames the real server sent, in order.
        pub from_server: Vec<u8>,
        /// Why the relay stopped before a SUCCESS or FAILURE, if it did.
        pub error: Option<String>,
    }

    /// An attacker in the middle of the user-authentication step: a TLS server with its
    /// own certificate (`attacker`, of the same trust domain) for the victim, and a TLS
    /// client with the same certificate to the real server at `upstream` (`upstream_name`);
    /// it relays the plaintext user-authentication frames between the two TLS connections,
    /// one at a time, until the real server sends SUCCESS or FAILURE.
    pub struct UserAuthRelay {
        pub addr: SocketAddr,
        report: mpsc::Receiver<RelayReport>,
    }

    impl UserAuthRelay {
        /// What the relay saw (waits for it to finish, at most 20 s).
        pub fn report(&self) -> RelayReport {
            self.report
                .recv_timeout(Duration::from_secs(20))
                .expect("the relay did not finish within 20 s")
        }
    }

    pub fn user_auth_relay(
        attacker: &Host,
        upstream: SocketAddr,
        upstream_name: &str,
    ) -> UserAuthRelay {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, report) = mpsc::channel();
        let attacker = attacker.clone();
        let upstream_name = upstream_name.to_string();
        let server_config = raw_tls_server_config(&attacker, &[USER_ALPN]);
        thread::spawn(move || {
            let Ok((victim, _)) = listener.accept() else {
                return;
            };
            let mut report = RelayReport::default();
            if let Err(e) = relay_frames(
                victim,
                server_config,
                &attacker,
                upstream,
                &upstream_name,
                &mut report,
            ) {
                report.error = Some(e.to_string());
            }
            let _ = tx.send(report);
        });
        UserAuthRelay { addr, report }
    }

    fn relay_frames(
        victim: TcpStream,
        config: Arc<rustls::ServerConfig>,
        attacker: &Host,
        upstream: SocketAddr,
        upstream_name: &str,
        report: &mut RelayReport,
    ) -> io::Result<()> {
        victim.set_read_timeout(Some(Duration::from_secs(20)))?;
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut victim = StreamOwned::new(conn, victim);
        while victim.conn.is_handshaking() {
            victim.conn.complete_io(&mut victim.sock)?;
        }
        if victim.conn.alpn_protocol() != Some(USER_ALPN) {
            return Err(io::Error::other("the victim did not offer the user ALPN"));
        }
        let mut server = raw_tls_client(attacker, upstream_name, upstream, &[USER_ALPN])?;
        if server.conn.alpn_protocol() != Some(USER_ALPN) {
            return Err(io::Error::other("the server did not select the user ALPN"));
        }
        loop {
            let (kind, payload) = read_user_frame(&mut victim)?;
            report.from_victim.push(kind);
            write_user_frame(&mut server, kind, &payload)?;
            let (kind, payload) = read_user_frame(&mut server)?;
            report.from_server.push(kind);
            write_user_frame(&mut victim, kind, &payload)?;
            if kind == SUCCESS || kind == FAILURE {
                return Ok(());
            }
        }
    }
}

/// Local accounts for the impersonation tests (run as root): users created with
/// `useradd` that are removed again when dropped, and the calling thread's file-system
/// identity as the kernel reports it.
pub mod local_accounts {
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// `useradd` and friends lock `/etc/passwd`: one at a time within this process, and
    /// retried while another process holds the lock.
    static ACCOUNT_DATABASE: Mutex<()> = Mutex::new(());

    /// A unique name for a test account: `sstest_PID_N`.
    pub fn unique_account_name() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "sstest_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn run_admin(program: &str, args: &[&str]) -> Result<(), String> {
        let _one_at_a_time = ACCOUNT_DATABASE.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..50 {
            let output = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run {program}: {e}"))?;
            if output.status.success() {
                return Ok(());
            }
            last = format!(
                "{program} {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// A local group that exists while this value lives.
    pub struct LocalGroup {
        pub name: String,
    }

    impl LocalGroup {
        pub fn create() -> LocalGroup {
            let name = unique_account_name();
            run_admin("groupadd", &[&name]).unwrap();
            LocalGroup { name }
        }

        pub fn gid(&self) -> u32 {
            let output = Command::new("getent")
                .args(["group", &self.name])
                .output()
                .unwrap();
            let line = String::from_utf8(output.stdout).unwrap();
            line.split(':').nth(2).unwrap().trim().parse().unwrap()
        }
    }

    impl Drop for LocalGroup {
        fn drop(&mut self) {
            if let Err(e) = run_admin("groupdel", &[&self.name]) {
                eprintln!("cleanup: {e}");
            }
        }
    }

    /// A local user with its own group, removed (with the group) when dropped.
    pub struct LocalUser {
        pub name: String,
        pub uid: u32,
        pub gid: u32,
        /// The account as impersonation sees it (supplementary groups included).
        pub account: secsock::impersonate::LocalAccount,
    }

    impl LocalUser {
        pub fn create() -> LocalUser {
            LocalUser::create_in(&[])
        }

        /// A user that is also a member of `groups`.
        pub fn create_in(groups: &[&LocalGroup]) -> LocalUser {
            let members = groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let mut options = vec!["--user-group"];
            if !members.is_empty() {
                options.extend(["--groups", members.as_str()]);
            }
            LocalUser::create_with(&options)
        }

        /// A user created by `useradd` with `options` (besides no home and no login
        /// shell), e.g. `["--user-group", "--system"]` for a uid below `UID_MIN`, or
        /// `["--no-user-group", "--gid", "0"]` for primary group root.
        pub fn create_with(options: &[&str]) -> LocalUser {
            let name = unique_account_name();
            let mut args = vec!["--no-create-home", "--shell", "/usr/sbin/nologin"];
            args.extend_from_slice(options);
            args.push(&name);
            run_admin("useradd", &args).unwrap();
            // From here on, Drop removes the user even if the lookup fails.
            let mut user = LocalUser {
                name: name.clone(),
                uid: 0,
                gid: 0,
                account: secsock::impersonate::LocalAccount {
                    name: name.clone(),
                    uid: 0,
                    gid: 0,
                    groups: Vec::new(),
                },
            };
            user.account = secsock::impersonate::LocalAccount::lookup(&name).unwrap();
            user.uid = user.account.uid;
            user.gid = user.account.gid;
            assert_ne!(user.uid, 0);
            user
        }
    }

    impl Drop for LocalUser {
        fn drop(&mut self) {
            // userdel also removes the user's own group (USERGROUPS_ENAB).
            if let Err(e) = run_admin("userdel", &[&self.name]) {
                eprintln!("cleanup: {e}");
            }
        }
    }

    /// The calling thread's file-system uid and gid (`/proc/thread-self/status`, field 4
    /// of `Uid:` and `Gid:`).
    pub fn thread_fs_ids() -> (u32, u32) {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |key: &str| -> u32 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("Uid:"), field("Gid:"))
    }
}

/// `openssl s_client` with `client`'s certificate, TLS 1.3, verifying the server as
/// `server.example.test`, plus `extra` arguments (see [`openssl_client`]).
pub fn openssl_mtls_client(
    client: &Host,
    addr: SocketAddr,
    extra: &[&str],
    input: &[u8],
    expect: &[u8],
) -> (Vec<u8>, String) {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (cert, key, ca) = (path(&client.cert), path(&client.key), path(&client.ca));
    // -quiet implies -ign_eof; -no_ign_eof lets s_client end when its input does.
    let mut args = vec![
        "-quiet",
        "-no_ign_eof",
        "-tls1_3",
        "-cert",
        &cert,
        "-key",
        &key,
        "-CAfile",
        &ca,
        "-verify_return_error",
        "-verify_hostname",
        "server.example.test",
        "-servername",
        "server.example.test",
    ];
    args.extend_from_slice(extra);
    openssl_client(addr, &args, input, expect)
}

/// A plain rustls TLS server (`host`'s certificate, the user ALPN) that accepts one
/// connection and runs `behaviour` on it once the handshake is done: a fake server for
/// the client side of the user-authentication step.
pub fn raw_user_auth_server<F>(host: &Host, behaviour: F) -> SocketAddr
where
    F: FnOnce(&mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>) + Send + 'static,
{
    let config = user_fixtures::raw_tls_server_config(host, &[user_fixtures::USER_ALPN]);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
        // Each frame leaves when written (no Nagle wait for the peer's delayed ACK).
        let _ = tcp.set_nodelay(true);
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                return;
            }
        }
        behaviour(&mut tls);
    });
    addr
}
