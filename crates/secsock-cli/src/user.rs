//! `secsock user add/remove`, and the user credentials `connect` and `query` present.

use std::io::{self, BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secsock::scram::{Verifier, DEFAULT_ITERATIONS, MIN_ITERATIONS};
use secsock::users;
use secsock::SecuritySettings;

/// `secsock user ...`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (or change its password): stores a salted SCRAM-SHA-256 verifier, never
    /// the password, in the policy's `[users] file`.
    Add(AddArgs),
    /// Remove a user.
    Remove(RemoveArgs),
}

/// `secsock user add`
#[derive(Args)]
pub struct AddArgs {
    /// The user: NAME@DOMAIN, or NAME with the policy's `[users] domain`.
    name: String,
    /// The policy whose `[users] file` holds the verifiers.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Read the password from the first line of FILE instead of a prompt.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// PBKDF2 iterations of the verifier (at least 4096). Keep the default: unknown users
    /// are challenged with it, so another count tells that this user exists.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// `secsock user remove`
#[derive(Args)]
pub struct RemoveArgs {
    /// The user: NAME@DOMAIN, or NAME with the policy's `[users] domain`.
    name: String,
    /// The policy whose `[users] file` holds the verifiers.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// The user identity `connect` and `query` prove (with a server that asks for one).
#[derive(Args, Clone, Default)]
pub struct UserArgs {
    /// Prove this user (NAME@DOMAIN) with a password (SCRAM-SHA-256-PLUS, bound to the
    /// connection); the password comes from --password-file or a prompt.
    #[arg(long, value_name = "NAME@DOMAIN", conflicts_with = "user_cert")]
    user: Option<String>,
    /// The password file for --user (its first line).
    #[arg(long, value_name = "FILE", requires = "user")]
    password_file: Option<PathBuf>,
    /// Prove the user named by this certificate (PEM chain; email or UPN SAN).
    #[arg(long, value_name = "FILE", requires = "user_key")]
    user_cert: Option<PathBuf>,
    /// The user certificate's private key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "user_cert")]
    user_key: Option<PathBuf>,
}

impl UserArgs {
    /// `settings` with the user identity, if one was given.
    pub fn apply(&self, settings: SecuritySettings) -> Result<SecuritySettings> {
        if let Some(user) = &self.user {
            let (name, domain) =
                users::split_user(user, None).map_err(|e| anyhow!("--user: {e}"))?;
            let password = read_password(
                self.password_file.as_deref(),
                &format!("Password for {name}@{domain}: "),
            )?;
            return Ok(settings.user_credentials(&name, &domain, &password));
        }
        if let (Some(cert), Some(key)) = (&self.user_cert, &self.user_key) {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow!("--user-cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                bail!("--user-cert {}: no certificate in the file", cert.display());
            }
            let key_der = secsock::policy::read_private_key_file(key)
                .map_err(|e| anyhow!("--user-key {}: {e}", key.display()))?;
            return Ok(settings.user_certificate(chain, key_der));
        }
        Ok(settings)
    }
}

/// Reads a password from the first line of `file`, or from the terminal without echo, or
/// (no terminal) from the first line of standard input.
fn read_password(file: Option<&Path>, prompt: &str) -> Result<String> {
    let password = match file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--password-file {}", file.display()))?;
            text.lines().next().unwrap_or("").to_string()
        }
        None if io::stdin().is_terminal() => {
            rpassword::prompt_password(prompt).context("reading the password")?
        }
        None => {
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn users_file(policy: &secsock::Policy) -> Result<PathBuf> {
    policy.users.file.clone().ok_or_else(|| {
        anyhow!(
            "{} has no `[users] file`: add\n  [users]\n  file = \"users.toml\"\nto the policy",
            policy.source.display()
        )
    })
}

fn load_policy(path: Option<&Path>) -> Result<secsock::Policy> {
    Ok(match path {
        Some(path) => secsock::Policy::load(path)?,
        None => secsock::Policy::discover()?,
    })
}

/// Runs `secsock user ...`.
pub fn run(command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add(args) => {
            if args.iterations < MIN_ITERATIONS {
                bail!(
                    "--iterations {} is below the minimum of {MIN_ITERATIONS}",
                    args.iterations
                );
            }
            let policy = load_policy(args.policy.as_deref())?;
            let file = users_file(&policy)?;
            let (name, domain) = users::split_user(&args.name, policy.users.domain.as_deref())
                .map_err(|e| anyhow!("{e}"))?;
            let password = read_password(
                args.password_file.as_deref(),
                &format!("New password for {name}@{domain}: "),
            )?;
            // A failed random source is an error, never a zero salt or secret.
            let random = rustls::crypto::aws_lc_rs::default_provider().secure_random;
            let verifier = Verifier::generate(&password, args.iterations, random)
                .map_err(|e| anyhow!("{e}"))?;
            let key = users::user_key(&name, &domain);
            users::add_user(&file, &key, verifier, random).map_err(|e| anyhow!("{e}"))?;
            println!("user:{key} added to {}", file.display());
            if args.iterations != DEFAULT_ITERATIONS {
                eprintln!(
                    "secsock: warning: {} iterations is not the default {DEFAULT_ITERATIONS}; \
                     an unknown user is challenged with the default, so this count tells \
                     anyone who asks that user:{key} exists",
                    args.iterations
                );
            }
            Ok(())
        }
        UserCommand::Remove(args) => {
            let policy = load_policy(args.policy.as_deref())?;
            let file = users_file(&policy)?;
            let (name, domain) = users::split_user(&args.name, policy.users.domain.as_deref())
                .map_err(|e| anyhow!("{e}"))?;
            let key = users::user_key(&name, &domain);
            if !users::remove_user(&file, &key).map_err(|e| anyhow!("{e}"))? {
                bail!("user:{key} is not in {}", file.display());
            }
            println!("user:{key} removed from {}", file.display());
            Ok(())
        }
    }
}
