//! The `secsock` command: a secured echo server, a client, and a query tool, like
//! `openssl s_server` / `s_client`, on the secsock platform.

mod authority;
mod demo;
mod doctor;
mod serve;
mod user;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use secsock::{Domain, PeerTargetName, Platform, SecureSocket, SecureStream, SecuritySettings};

/// Secure socket extensions for Linux: secured TCP connections with named, proven peers.
#[derive(Parser)]
#[command(name = "secsock", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole client and server flow on a fresh, temporary trust domain, on loopback.
    Demo,
    /// Create a trust domain: a CA, this host's identity, and a policy that uses them.
    Init(InitArgs),
    /// Issue an identity for a principal, signed by the trust domain's CA, into a directory
    /// another host can copy and use as-is.
    Issue(IssueArgs),
    /// Check a policy and every file it names; say what is wrong and how to fix it.
    Doctor(DoctorArgs),
    /// Run a secured echo server: every byte received is sent back.
    Serve(ServeArgs),
    /// Connect to a secured server: standard input is sent, what comes back is printed.
    Connect(ConnectArgs),
    /// Connect, print what protects the connection and who the peer proved to be, close.
    Query(QueryArgs),
    /// Manage the users a server authenticates by password.
    #[command(subcommand)]
    User(user::UserCommand),
}

#[derive(Args)]
struct PolicyArg {
    /// The policy file (default: $SECSOCK_POLICY, then ~/.config/secsock/policy.toml,
    /// then /etc/secsock/policy.toml).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Args)]
struct InitArgs {
    /// Where to create the trust domain (default: the per-user config directory, where
    /// serve/connect/query find the policy without --policy).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The trust domain's name, e.g. example.test (also the Kerberos realm, uppercased).
    #[arg(long, value_name = "DOMAIN", default_value = "secsock.internal")]
    domain: String,
    /// This host's principal (default: host/<this host's name>).
    #[arg(long, value_name = "PRINCIPAL")]
    name: Option<String>,
    /// Key algorithm of the CA and the identity: p256 or ed25519.
    #[arg(long, value_name = "ALG", default_value = "p256")]
    algorithm: authority::KeyAlgorithm,
    /// Validity of this host's identity, in days (the CA gets ten years).
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u32,
    /// Replace an existing trust domain in DIR.
    #[arg(long)]
    force: bool,
    /// Print what was created as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct IssueArgs {
    /// The principal: host/NAME[@REALM], service/NAME[:port][/name], a DNS name, an IP,
    /// spiffe://domain/path, user:NAME@DOMAIN.
    principal: String,
    #[command(flatten)]
    policy: PolicyArg,
    /// Directory to write the identity and its policy into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = 90)]
    days: u32,
    /// Key algorithm: p256 or ed25519.
    #[arg(long, value_name = "ALG", default_value = "p256")]
    algorithm: authority::KeyAlgorithm,
    /// Replace an existing identity in DIR.
    #[arg(long)]
    force: bool,
    /// Print what was issued as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// Check as of this time instead of now (RFC 3339, e.g. 2027-01-01T00:00:00Z): will
    /// the setup still work then?
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<std::time::SystemTime>,
}

fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(std::time::SystemTime::from)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z: {e}"))
}

/// The security settings a command applies (`SecuritySettings`).
#[derive(Args, Clone)]
struct SecurityArgs {
    /// Allow clear text where the peer plainly does not speak TLS (never on a failed
    /// verification): ALLOW_INSECURE.
    #[arg(long)]
    allow_insecure: bool,
    /// Refuse any outcome without encryption: GUARANTEE_ENCRYPTION.
    #[arg(long)]
    guarantee_encryption: bool,
    /// A peer whose names do not match is accepted if its chain is trusted; the mismatch is
    /// reported: OPTIONAL_PEER_NAME_VERIFICATION.
    #[arg(long)]
    optional_peer_name_verification: bool,
}

impl SecurityArgs {
    fn settings(&self) -> Result<SecuritySettings> {
        let mut flags = secsock::SecurityFlags::empty();
        if self.allow_insecure {
            flags |= secsock::SecurityFlags::ALLOW_INSECURE;
        }
        if self.guarantee_encryption {
            flags |= secsock::SecurityFlags::GUARANTEE_ENCRYPTION;
        }
        let mut options = secsock::OptionFlags::empty();
        if self.optional_peer_name_verification {
            options |= secsock::OptionFlags::OPTIONAL_PEER_NAME_VERIFICATION;
        }
        let settings = SecuritySettings::new()
            .with_flags(flags)
            .with_options(options);
        settings
            .validate()
            .context("--allow-insecure, --guarantee-encryption")?;
        Ok(settings)
    }
}

/// `NAME` or `NAME@ADDR[/PREFIX]`: a principal allowed to connect, from anywhere or from
/// the given addresses. Names may contain `@` themselves (realms, users): the address is
/// what follows the last `@`, when that parses as an address or prefix.
fn parse_allow_peer(text: &str) -> Result<(PeerTargetName, secsock::AddressPrefix), String> {
    if let Some((name, addr)) = text.rsplit_once('@') {
        if let Ok(prefix) = addr.parse::<secsock::AddressPrefix>() {
            let name = PeerTargetName::parse(name).map_err(|e| e.to_string())?;
            return Ok((name, prefix));
        }
    }
    let name = PeerTargetName::parse(text).map_err(|e| e.to_string())?;
    Ok((name, secsock::AddressPrefix::Any))
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    policy: PolicyArg,
    #[command(flatten)]
    security: SecurityArgs,
    /// Only this principal may connect (repeatable); `NAME@ADDR/PREFIX` limits the rule to
    /// clients from those addresses. Without any, every principal proven under the trust
    /// anchors may connect.
    #[arg(long, value_name = "NAME[@ADDR/PREFIX]", value_parser = parse_allow_peer)]
    allow_peer: Vec<(PeerTargetName, secsock::AddressPrefix)>,
    /// Handle each connection as its peer: the user it proved (else its machine), mapped to
    /// a local account by the policy's [[accounts]]; needs CAP_SETUID and CAP_SETGID.
    #[arg(long)]
    impersonate: bool,
    /// Address to listen on, e.g. 127.0.0.1:27015 or [::]:27015.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Print each connection's security information as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Most connections open at once; more are accepted and closed at once. Default: what
    /// the file-descriptor limit allows (raised to the hard limit at start).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most handshakes in progress at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_handshakes: usize,
    /// Most handshakes in progress at once from one source (an IPv4 address or an IPv6
    /// /64); more connections from it are closed at once, so that one host cannot hold
    /// every handshake slot with idle connections.
    #[arg(long, value_name = "N", default_value_t = secsock::handshakes::DEFAULT_MAX_HANDSHAKES_PER_SOURCE)]
    max_handshakes_per_source: usize,
}

#[derive(Args)]
struct ConnectArgs {
    #[command(flatten)]
    policy: PolicyArg,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    user: user::UserArgs,
    /// The principal the server must prove: host/server.example.test, server.example.test,
    /// 192.0.2.1, spiffe://example.test/service, ...
    #[arg(long, value_name = "NAME")]
    peer_name: String,
    /// The server's address (host:port).
    addr: String,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    policy: PolicyArg,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    user: user::UserArgs,
    /// The principal the server must prove.
    #[arg(long, value_name = "NAME")]
    peer_name: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The server's address (host:port).
    addr: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SECSOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Init(args) => init(args),
        Command::Issue(args) => issue(args),
        Command::Doctor(args) => return doctor(args),
        Command::User(command) => user::run(command),
        Command::Serve(args) => serve(args),
        Command::Connect(args) => connect(args),
        Command::Query(args) => query(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secsock: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The per-user configuration directory of the discovery order.
fn per_user_dir() -> Result<PathBuf> {
    secsock::Policy::discovery_candidates()
        .into_iter()
        .find(|(_, why)| *why == "per-user config")
        .and_then(|(path, _)| path.parent().map(PathBuf::from))
        .ok_or_else(|| {
            anyhow!(
                "no per-user config directory ($XDG_CONFIG_HOME and $HOME are unset): pass --dir"
            )
        })
}

fn init(args: InitArgs) -> Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => per_user_dir()?,
    };
    let policy_path = dir.join("policy.toml");
    if policy_path.exists() && !args.force {
        bail!(
            "{} already exists: a trust domain is there; pass --force to replace it",
            policy_path.display()
        );
    }
    let principal = match &args.name {
        Some(name) => secsock::PrincipalName::parse(name).context("--name")?,
        None => secsock::PrincipalName::parse(&format!(
            "host/{}",
            authority::this_host_name(Some(&args.domain))
        ))
        .context("this host's name does not make a principal; pass --name")?,
    };
    let realm = args.domain.to_ascii_uppercase();
    let ca = authority::CertificateAuthority::create(&args.domain, args.algorithm, 3650)?;
    let identity = ca.issue(&principal, &realm, args.algorithm, args.days)?;
    authority::write_ca(&dir, &ca, args.force)?;
    let policy = authority::write_identity_dir(
        &dir,
        &identity,
        ca.certificate_pem(),
        Some(("ca/ca.crt", "ca/ca.key")),
        args.force,
    )?;
    let ca_certificate = dir.join("ca/ca.crt");
    let ca_key = dir.join("ca/ca.key");
    if args.json {
        let value = serde_json::json!({
            "domain": args.domain,
            "dir": dir,
            "policy": policy,
            "ca_certificate": ca_certificate,
            "ca_private_key": ca_key,
            "principal": principal.to_string(),
            "not_after": rfc3339(identity.not_after),
        });
        println!("{value:#}");
    } else {
        println!(
            "Created trust domain `{}` in {}",
            args.domain,
            dir.display()
        );
        println!(
            "  CA:        {} (key {}, mode 0600)",
            ca_certificate.display(),
            ca_key.display()
        );
        println!(
            "  identity:  {principal}, valid until {}",
            rfc3339(identity.not_after)
        );
        println!("  policy:    {}", policy.display());
        println!(
            "Next: `secsock issue host/OTHER.{} --out DIR` for another host, then copy DIR there.",
            args.domain
        );
    }
    if let Some(env) = std::env::var_os("SECSOCK_POLICY").filter(|v| !v.is_empty()) {
        if std::path::Path::new(&env) != policy {
            eprintln!(
                "secsock: note: $SECSOCK_POLICY={} takes precedence over this policy",
                PathBuf::from(env).display()
            );
        }
    }
    Ok(())
}

fn issue(args: IssueArgs) -> Result<()> {
    let policy = match &args.policy.policy {
        Some(path) => secsock::Policy::load(path)?,
        None => secsock::Policy::discover()?,
    };
    let authority = policy.authority.as_ref().ok_or_else(|| {
        anyhow!(
            "{} has no [authority] section: run `secsock issue` on the host where `secsock init` created the trust domain",
            policy.source.display()
        )
    })?;
    let ca = authority::CertificateAuthority::load(
        &authority.certificate_file,
        &authority.private_key_file,
    )?;
    let principal = secsock::PrincipalName::parse(&args.principal).context("PRINCIPAL")?;
    let realm = ca.domain().to_ascii_uppercase();
    let identity = ca.issue(&principal, &realm, args.algorithm, args.days)?;
    let written = authority::write_identity_dir(
        &args.out,
        &identity,
        ca.certificate_pem(),
        None,
        args.force,
    )?;
    if args.json {
        let value = serde_json::json!({
            "principal": principal.to_string(),
            "policy": written,
            "certificate": args.out.join("identity/host.crt"),
            "private_key": args.out.join("identity/host.key"),
            "trust_anchor": args.out.join("trust/ca.crt"),
            "not_after": rfc3339(identity.not_after),
        });
        println!("{value:#}");
    } else {
        println!(
            "Issued {principal}, valid until {}",
            rfc3339(identity.not_after)
        );
        println!("  policy: {}", written.display());
        println!(
            "Copy {} to the host; there, run `secsock serve --policy DIR/policy.toml` or set SECSOCK_POLICY.",
            args.out.display()
        );
    }
    Ok(())
}

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

fn doctor(args: DoctorArgs) -> ExitCode {
    let path = match args.policy.policy {
        Some(path) => path,
        None => match secsock::Policy::discovery_candidates()
            .into_iter()
            .find(|(p, _)| p.exists())
        {
            Some((path, _)) => path,
            None => {
                let looked: Vec<String> = secsock::Policy::discovery_candidates()
                    .iter()
                    .map(|(p, why)| format!("{} ({why})", p.display()))
                    .collect();
                let report = doctor::Report {
                    policy: PathBuf::new(),
                    healthy: false,
                    findings: vec![doctor::Finding {
                        severity: doctor::Severity::Error,
                        check: "policy",
                        file: None,
                        line: None,
                        key: None,
                        problem: format!("no policy file found; looked in: {}", looked.join(", ")),
                        fix: "create a trust domain with `secsock init`, or name the policy with --policy FILE".into(),
                    }],
                    notes: Vec::new(),
                };
                return print_report(&report, args.json);
            }
        },
    };
    let now = args.at.unwrap_or_else(std::time::SystemTime::now);
    print_report(&doctor::check(&path, now), args.json)
}

fn print_report(report: &doctor::Report, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        doctor::print_human(report);
    }
    if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn platform(arg: &PolicyArg) -> Result<Arc<Platform>> {
    Ok(match &arg.policy {
        Some(path) => Platform::load(path)?,
        None => Platform::discover()?,
    })
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve address `{addr}`"))?
        .next()
        .ok_or_else(|| anyhow!("address `{addr}` resolves to nothing"))
}

fn domain_of(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    serve::run(serve::Options {
        platform: platform(&args.policy)?,
        addr: resolve(&args.listen)?,
        json: args.json,
        max_connections: args.max_connections,
        max_handshakes: args.max_handshakes,
        max_handshakes_per_source: args.max_handshakes_per_source,
        settings: args.security.settings()?,
        allow_peers: args.allow_peer,
        impersonate: args.impersonate,
    })
}

fn connect_to(
    policy: &PolicyArg,
    security: &SecurityArgs,
    user: &user::UserArgs,
    peer_name: &str,
    addr: &str,
) -> Result<SecureStream> {
    let platform = platform(policy)?;
    let target = PeerTargetName::parse(peer_name).context("--peer-name")?;
    let addr = resolve(addr)?;
    let mut socket = SecureSocket::with_platform(domain_of(&addr), platform)?;
    socket.set_security(&user.apply(security.settings()?)?)?;
    socket.set_peer_target_name(target)?;
    socket
        .connect(addr)
        .with_context(|| format!("cannot secure a connection to {addr}"))
}

fn connect(args: ConnectArgs) -> Result<()> {
    let mut stream = connect_to(
        &args.policy,
        &args.security,
        &args.user,
        &args.peer_name,
        &args.addr,
    )?;
    // Standard input is read on its own thread; the connection is served here, reading
    // with a short timeout so that sending and receiving interleave.
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut chunk = vec![0u8; 16 * 1024];
            match stdin.read(&mut chunk) {
                Ok(0) => {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    stream.set_read_timeout(Some(Duration::from_millis(2)))?;
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut input_done = false;
    loop {
        if !input_done {
            match rx.recv_timeout(Duration::from_millis(2)) {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    stream.shutdown(Shutdown::Write)?;
                    input_done = true;
                }
                Ok(Ok(chunk)) => stream.write_all(&chunk).context("sending")?,
                Ok(Err(e)) => bail!("reading standard input: {e}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("standard input reader stopped"),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stdout.write_all(&buf[..n])?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(anyhow!(e).context("receiving")),
        }
    }
    stdout.flush()?;
    if !input_done {
        // The server finished first; say we are done too.
        stream.shutdown(Shutdown::Write)?;
    }
    stream.close()?;
    Ok(())
}

fn query(args: QueryArgs) -> Result<()> {
    let stream = connect_to(
        &args.policy,
        &args.security,
        &args.user,
        &args.peer_name,
        &args.addr,
    )?;
    let info = stream.query_security();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("connected to {} ({})", stream.peer_addr(), args.peer_name);
        print!("{info}");
    }
    stream.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_peer_takes_an_optional_address_after_the_last_at() {
        let cases: &[(&str, &str, &str)] = &[
            ("host/client.example.test", "host/client.example.test", "*"),
            (
                "host/client.example.test@127.0.0.2",
                "host/client.example.test",
                "127.0.0.2/32",
            ),
            (
                "host/client.example.test@10.0.0.0/8",
                "host/client.example.test",
                "10.0.0.0/8",
            ),
            (
                "host/db.example.test@EXAMPLE.TEST",
                "host/db.example.test@EXAMPLE.TEST",
                "*",
            ),
            (
                "host/db.example.test@EXAMPLE.TEST@192.0.2.0/24",
                "host/db.example.test@EXAMPLE.TEST",
                "192.0.2.0/24",
            ),
            ("user:alice@EXAMPLE.TEST", "user:alice@EXAMPLE.TEST", "*"),
            (
                "spiffe://example.test/api@[2001:db8::]/32",
                "spiffe://example.test/api",
                "2001:db8::/32",
            ),
        ];
        for (text, name, prefix) in cases {
            let (n, p) = parse_allow_peer(text).unwrap();
            assert_eq!(
                (n.as_str(), p.to_string().as_str()),
                (*name, *prefix),
                "{text}"
            );
        }
        assert!(parse_allow_peer("not a name@10.0.0.0/8").is_err());
    }

    #[test]
    fn conflicting_flags_are_refused() {
        let args = SecurityArgs {
            allow_insecure: true,
            guarantee_encryption: true,
            optional_peer_name_verification: false,
        };
        let err = args.settings().unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot be set together"),
            "{err:#}"
        );
    }
}
