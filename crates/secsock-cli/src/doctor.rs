//! `secsock doctor`: checks a policy and everything it refers to, and says for each
//! problem what is wrong and how to fix it.
//!
//! Pure reporting: the checks read files and certificates but change nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use secsock::name::CertificateNames;
use secsock::policy::{ExpiredCrls, Policy, PolicyError, PolicyErrorKind};
use secsock::scram::DEFAULT_ITERATIONS;
use secsock::verify::{ChainValidator, Usage};
use serde::Serialize;

/// How close to expiry a certificate must be to be reported.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// How bad a finding is. Any finding makes the policy unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// secsock will fail, now or at the next connection.
    Error,
    /// secsock works today, but will not for long.
    Warning,
}

/// One problem, with its fix.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Which check found it, e.g. `policy`, `identity-chain`, `identity-expiry`.
    pub check: &'static str,
    /// The file involved, if any.
    pub file: Option<PathBuf>,
    /// The line of the policy file, if known.
    pub line: Option<usize>,
    /// The policy key, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// The outcome of a check.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The policy file checked.
    pub policy: PathBuf,
    /// True when there is no finding.
    pub healthy: bool,
    /// Every problem found.
    pub findings: Vec<Finding>,
    /// Facts worth knowing that are not problems.
    pub notes: Vec<String>,
}

fn finding(
    severity: Severity,
    check: &'static str,
    file: Option<&Path>,
    problem: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        check,
        file: file.map(Path::to_path_buf),
        line: None,
        key: None,
        problem,
        fix,
    }
}

/// The fix for a policy loading error.
fn policy_fix(error: &PolicyError) -> String {
    match &error.kind {
        PolicyErrorKind::NotFound { .. } => {
            "create a trust domain with `secsock init`, or name the policy with --policy FILE".into()
        }
        PolicyErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("create it with `secsock init --dir {}`, or name another file with --policy", parent_of(&error.file))
        }
        PolicyErrorKind::Io(_) => "make the policy file readable by this user".into(),
        PolicyErrorKind::Syntax(_) => match error.line {
            Some(line) => format!("correct the TOML syntax at line {line}"),
            None => "correct the TOML syntax".into(),
        },
        PolicyErrorKind::UnknownKey { .. } => "remove the key or correct its spelling (see docs/POLICY.md)".into(),
        PolicyErrorKind::MissingKey(_) => "add it (see docs/POLICY.md)".into(),
        PolicyErrorKind::InvalidValue(message) if message.contains("is not the private key") => {
            "name the key that belongs to this certificate, or issue a new identity with `secsock issue`".into()
        }
        PolicyErrorKind::InvalidValue(message) if message.contains("cannot be used") => {
            "replace it with an X.509 v3 certificate chain (`secsock issue` makes one)".into()
        }
        PolicyErrorKind::InvalidValue(_) => "use one of the values the message lists (see docs/POLICY.md)".into(),
        PolicyErrorKind::MissingFile { path, error: e } if e.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("make {} readable by this user", path.display())
        }
        PolicyErrorKind::MissingFile { .. } => {
            "create the file or correct the path (relative paths are relative to the policy file)".into()
        }
        PolicyErrorKind::KeyPermissions { path, .. } => format!("run `chmod 600 {}`", path.display()),
        PolicyErrorKind::UsersFilePermissions { path, .. } => format!("run `chmod 600 {}`", path.display()),
        PolicyErrorKind::WritableByOthers { path, .. } => format!("run `chmod go-w {}`", path.display()),
        PolicyErrorKind::BadPem { .. } => "replace it with a PEM file of the right kind".into(),
        PolicyErrorKind::Unsupported(_) => "remove that section; this version of secsock cannot honour it".into(),
        _ => "see docs/POLICY.md".into(),
    }
}

fn parent_of(path: &Path) -> String {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .display()
        .to_string()
}

/// Checks the policy at `path` as of `now`.
pub fn check(path: &Path, now: SystemTime) -> Report {
    let diagnosis = Policy::diagnose(path);
    let mut findings: Vec<Finding> = diagnosis
        .errors
        .iter()
        .map(|e| Finding {
            severity: Severity::Error,
            check: "policy",
            file: Some(e.file.clone()),
            line: e.line,
            key: e.key.clone(),
            problem: e.kind.to_string(),
            fix: policy_fix(e),
        })
        .collect();
    let mut notes = Vec::new();
    if let Some(policy) = &diagnosis.policy {
        check_loaded(policy, now, &mut findings, &mut notes);
    }
    Report {
        policy: path.to_path_buf(),
        healthy: findings.is_empty(),
        findings,
        notes,
    }
}

/// Validity of one certificate: expired, not yet valid, or expiring soon.
fn validity(
    der: &CertificateDer<'_>,
    now: SystemTime,
    what: &str,
    file: &Path,
    check: &'static str,
    renew: &str,
) -> Option<Finding> {
    let (_, cert) = match x509_parser::parse_x509_certificate(der) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Some(finding(
                Severity::Error,
                check,
                Some(file),
                format!("{what} cannot be parsed: {e}"),
                "replace the file with a valid PEM certificate".into(),
            ))
        }
    };
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let not_before = at(cert.validity().not_before.timestamp());
    let not_after = at(cert.validity().not_after.timestamp());
    let show = secsock_time;
    if now > not_after {
        Some(finding(
            Severity::Error,
            check,
            Some(file),
            format!("{what} expired at {}", show(not_after)),
            renew.to_string(),
        ))
    } else if now < not_before {
        Some(finding(
            Severity::Error,
            check,
            Some(file),
            format!("{what} is not valid until {}", show(not_before)),
            "check this machine's clock, or wait until the certificate becomes valid".into(),
        ))
    } else if not_after.duration_since(now).unwrap_or_default() < EXPIRY_WARNING {
        Some(finding(
            Severity::Warning,
            check,
            Some(file),
            format!("{what} expires within 7 days, at {}", show(not_after)),
            renew.to_string(),
        ))
    } else {
        None
    }
}

fn secsock_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Whether a certificate is deliberately for clients only: it lists extended key usages,
/// clientAuth among them, but not serverAuth (a user identity, say).
fn client_only(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.extended_key_usage()
                .ok()
                .flatten()
                .map(|eku| eku.value.client_auth && !eku.value.server_auth && !eku.value.any)
        })
        .unwrap_or(false)
}

fn check_loaded(
    policy: &Policy,
    now: SystemTime,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) {
    let identity = &policy.identity;
    let cert_file = &identity.certificate_file;
    let renew = "issue a new identity with `secsock issue PRINCIPAL --out DIR` on the trust domain's CA host, and copy it here";
    let Some((leaf, intermediates)) = identity.chain.split_first() else {
        return;
    };

    findings.extend(validity(
        leaf,
        now,
        "the identity certificate",
        cert_file,
        "identity-expiry",
        renew,
    ));

    match CertificateNames::from_der(leaf) {
        Ok(names) if names.proven().is_empty() => findings.push(finding(
            Severity::Error,
            "identity-names",
            Some(cert_file),
            format!(
                "the identity certificate proves no principal name (it presents {})",
                if names.presented().is_empty() { "no names at all".to_string() } else { names.presented().join(", ") }
            ),
            "issue an identity for a principal (host/NAME, a DNS name, an IP, a SPIFFE ID) with `secsock issue`".into(),
        )),
        Ok(_) => {}
        Err(e) => findings.push(finding(
            Severity::Error,
            "identity-names",
            Some(cert_file),
            format!("the identity certificate cannot be parsed: {e}"),
            "replace it with a valid PEM certificate chain".into(),
        )),
    }

    let algorithms =
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    let validator = ChainValidator::new(&policy.trust.anchors, &policy.trust.crls, algorithms)
        .map(|v| v.with_expired_crls(policy.trust.expired_crls));
    match validator {
        Err(e) => findings.push(finding(
            Severity::Error,
            "trust",
            policy.trust.anchor_files.first().map(PathBuf::as_path),
            e,
            "replace the unusable anchor or CRL file".into(),
        )),
        Ok(validator) => {
            let unix_now =
                UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
            let client_only = client_only(leaf);
            if client_only {
                notes.push(
                    "this identity is for clients only (its extended key usage has clientAuth, \
                     not serverAuth): it can connect, but not accept connections"
                        .into(),
                );
            }
            for (usage, role) in [
                (Usage::ServerAuth, "accepting connections"),
                (Usage::ClientAuth, "connecting"),
            ] {
                if client_only && usage == Usage::ServerAuth {
                    continue;
                }
                if let Err(e) = validator.validate(leaf, intermediates, unix_now, usage) {
                    // Expiry is reported once, above; an expired CRL below.
                    if matches!(
                        e,
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::Expired
                                | rustls::CertificateError::ExpiredContext { .. }
                                | rustls::CertificateError::NotValidYet
                                | rustls::CertificateError::NotValidYetContext { .. }
                                | rustls::CertificateError::ExpiredRevocationList
                                | rustls::CertificateError::ExpiredRevocationListContext { .. }
                        )
                    ) {
                        continue;
                    }
                    let unanchored = matches!(
                        e,
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::UnknownIssuer
                                | rustls::CertificateError::BadSignature
                        )
                    );
                    let (problem, fix) = match &e {
                        _ if unanchored => (
                            format!(
                                "the identity's chain does not lead to any of the policy's trust anchors{}",
                                if matches!(e, rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)) {
                                    " (a trusted CA has the issuer's name, but did not sign it)"
                                } else {
                                    ""
                                }
                            ),
                            "issue the identity from this trust domain's CA, or add its CA certificate to [trust] anchors".to_string(),
                        ),
                        rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose) => (
                            format!("the identity certificate is not valid for TLS when {role} (extended key usage)"),
                            "issue a new identity with `secsock issue` (it allows both serverAuth and clientAuth)".to_string(),
                        ),
                        other => (format!("the identity's chain does not validate for {role}: {other}"), renew.to_string()),
                    };
                    findings.push(finding(
                        Severity::Error,
                        "identity-chain",
                        Some(cert_file),
                        problem,
                        fix,
                    ));
                    if unanchored {
                        break; // the same for both usages
                    }
                }
            }
        }
    }

    for (i, anchor) in policy.trust.anchors.iter().enumerate() {
        let file = policy
            .trust
            .anchor_files
            .get(i)
            .or(policy.trust.anchor_files.last())
            .map(PathBuf::as_path)
            .unwrap_or(Path::new(""));
        findings.extend(validity(
            anchor,
            now,
            &format!("trust anchor #{}", i + 1),
            file,
            "anchor-expiry",
            "create a new CA certificate (`secsock init --force` on the CA host) and distribute it",
        ));
    }

    check_crls(policy, now, findings);
    if let Some(file) = &policy.users.file {
        check_users(file, findings);
    }

    if let Some(authority) = &policy.authority {
        check_authority(authority, &policy.trust.anchors, now, findings);
    }
}

/// CRLs that expired (nextUpdate passed) or expire within 7 days: what secsock does with
/// them depends on `[trust] expired_crls`.
fn check_crls(policy: &Policy, now: SystemTime, findings: &mut Vec<Finding>) {
    let refuse = policy.trust.expired_crls == ExpiredCrls::Refuse;
    for (i, der) in policy.trust.crls.iter().enumerate() {
        let file = policy.trust.crl_origins.get(i).map(PathBuf::as_path);
        let shown = file.map_or_else(|| "its file".into(), |f| f.display().to_string());
        let fix = format!(
            "put a fresh CRL from the CA in {shown} and restart the programs that use this \
             policy (CRLs are read when it loads)"
        );
        let summary = match secsock::crl::describe(der) {
            Ok(summary) => summary,
            Err(e) => {
                findings.push(finding(
                    Severity::Error,
                    "crl",
                    file,
                    format!("CRL #{} cannot be read: {e}", i + 1),
                    "replace it with a PEM or DER CRL from the CA".into(),
                ));
                continue;
            }
        };
        let Some(next_update) = summary.next_update else {
            continue;
        };
        let what = format!("the CRL of {}", summary.issuer);
        if now >= next_update {
            let (severity, consequence) = if refuse {
                (
                    Severity::Error,
                    "certificates of its issuer are refused ([trust] expired_crls = \"refuse\")",
                )
            } else {
                (
                    Severity::Warning,
                    "secsock still uses it, and it may miss revocations made since \
                     ([trust] expired_crls = \"warn\")",
                )
            };
            findings.push(finding(
                severity,
                "crl-expiry",
                file,
                format!(
                    "{what} expired at {}: {consequence}",
                    secsock_time(next_update)
                ),
                fix,
            ));
        } else if next_update.duration_since(now).unwrap_or_default() < EXPIRY_WARNING {
            findings.push(finding(
                Severity::Warning,
                "crl-expiry",
                file,
                format!(
                    "{what} expires within 7 days, at {}",
                    secsock_time(next_update)
                ),
                fix,
            ));
        }
    }
}

/// The users file: readable, and every verifier with the default iteration count (unknown
/// users' decoy challenges have the default, so another count says the user exists).
fn check_users(file: &Path, findings: &mut Vec<Finding>) {
    match secsock::users::read_users(file) {
        Err(e) => {
            let fix = if e.contains("chmod 600") {
                format!("run `chmod 600 {}`", file.display())
            } else {
                "correct the file, or remove it and add the users again with `secsock user add`"
                    .into()
            };
            findings.push(finding(Severity::Error, "users", Some(file), e, fix));
        }
        Ok(data) => {
            for (user, verifier) in &data.users {
                if verifier.iterations != DEFAULT_ITERATIONS {
                    findings.push(finding(
                        Severity::Warning,
                        "users-iterations",
                        Some(file),
                        format!(
                            "user:{user}'s verifier has {} PBKDF2 iterations, not the default \
                             {DEFAULT_ITERATIONS}: an unknown user is challenged with the default, \
                             so this count tells anyone that user:{user} exists",
                            verifier.iterations
                        ),
                        format!("set the password again with `secsock user add {user}`"),
                    ));
                }
            }
        }
    }
}

fn check_authority(
    authority: &secsock::policy::Authority,
    anchors: &[CertificateDer<'static>],
    now: SystemTime,
    findings: &mut Vec<Finding>,
) {
    let cert_file = &authority.certificate_file;
    match crate::authority::CertificateAuthority::load(cert_file, &authority.private_key_file) {
        Err(e) => findings.push(finding(
            Severity::Error,
            "authority",
            Some(&authority.private_key_file),
            format!("{e:#}"),
            "fix the [authority] files (the CA that `secsock issue` uses), or remove the section on hosts that do not issue identities".into(),
        )),
        Ok(ca) => {
            let der = rustls_pki_types::pem::PemObject::from_pem_slice(ca.certificate_pem().as_bytes())
                .map(|d: CertificateDer<'static>| d);
            if let Ok(der) = der {
                if !anchors.iter().any(|a| a.as_ref() == der.as_ref()) {
                    findings.push(finding(
                        Severity::Error,
                        "authority",
                        Some(cert_file),
                        "the [authority] CA is not one of this policy's trust anchors: identities it issues would not be trusted here".into(),
                        format!("add {} to [trust] anchors", cert_file.display()),
                    ));
                }
                findings.extend(validity(
                    &der,
                    now,
                    "the CA certificate",
                    cert_file,
                    "authority-expiry",
                    "create a new trust domain (`secsock init --force`) and re-issue identities",
                ));
            }
        }
    }
}

/// Prints the report for people.
pub fn print_human(report: &Report) {
    for note in &report.notes {
        println!("note: {note}");
    }
    if report.healthy {
        println!("{}: healthy", report.policy.display());
        return;
    }
    println!(
        "{}: {} problem(s) found",
        report.policy.display(),
        report.findings.len()
    );
    for f in &report.findings {
        let mut place = String::new();
        if let Some(file) = &f.file {
            place.push_str(&file.display().to_string());
            if let Some(line) = f.line {
                place.push_str(&format!(":{line}"));
            }
            place.push_str(": ");
        }
        if let Some(key) = &f.key {
            place.push_str(&format!("{key}: "));
        }
        let label = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("{label}: {place}{}", f.problem);
        println!("  fix: {}", f.fix);
    }
}
