//! Shared fixtures for the integration tests: temporary trust domains with real
//! certificates on disk and policy files, in-process servers, real openssl peers, and a
//! recording relay. Tests talk over real TCP on loopback.
#![allow(dead_code)]

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
        let dir = self.dir.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans.iter().map(San::to_rcgen).collect();
        params.distinguished_name.push(DnType::CommonName, label);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = dir.join("host.crt");
        let key_path = dir.join("host.key");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        write_private(&key_path, &key.serialize_pem());
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

/// A server on loopback serving each connection with `handler` on its own thread; each
/// handshake outcome is sent on the returned channel.
pub struct TestServer {
    pub addr: SocketAddr,
    pub outcomes: mpsc::Receiver<Result<SecurityInfo, String>>,
}

pub fn listen(platform: Arc<Platform>, settings: &SecuritySettings) -> SecureListener {
    let mut socket = SecureSocket::with_platform(Domain::IPV4, platform).unwrap();
    socket.set_security(settings).unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    socket.listen(128).unwrap()
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
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !expect.is_empty() && out.windows(expect.len()).any(|w| w == expect) {
            break;
        }
    }
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
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
}

pub fn relay(upstream: SocketAddr) -> Relay {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let to_server = Arc::new(Mutex::new(Vec::new()));
    let to_client = Arc::new(Mutex::new(Vec::new()));
    let (ts, tc) = (to_server.clone(), to_client.clone());
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                ts.clone(),
            );
            pump(server, client, tc.clone());
        }
    });
    Relay {
        addr,
        to_server,
        to_client,
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
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
    });
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
