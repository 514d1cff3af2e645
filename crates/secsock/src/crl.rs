//! CRL freshness: when each CRL of the policy stops being current (its nextUpdate), what
//! an expired CRL does (`[trust] expired_crls`), and the warnings about expired ones.
//!
//! A CRL past its nextUpdate may miss revocations made since. CRLs are read when the
//! policy loads, so refusing on an expired one would stop every peer of that issuer until
//! a restart with a fresh file: the default is to go on using it and say so — a warning
//! for each expired CRL when the platform loads, then at most once a day per CRL, driven
//! by the time of the validations (so tests step through days without waiting). With
//! `expired_crls = "refuse"`, webpki enforces nextUpdate, and a cached validation never
//! outlives the earliest nextUpdate (`CrlFreshness::cache_until`).
//!
//! Not here: validation itself ([`crate::verify`]) and the doctor's findings (which use
//! [`describe`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateRevocationListDer, UnixTime};

use crate::policy::ExpiredCrls;

/// How often an expired CRL is warned about again.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a person needs to know about one CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    /// The issuer's distinguished name, e.g. `CN=example.test CA`.
    pub issuer: String,
    /// When the CRL stops being current (nextUpdate), if it says.
    pub next_update: Option<SystemTime>,
}

/// Reads the issuer and nextUpdate of a DER CRL.
pub fn describe(der: &CertificateRevocationListDer<'_>) -> Result<CrlSummary, String> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| format!("not a CRL: {e}"))?;
    let next_update = crl
        .next_update()
        .map(|t| UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64));
    Ok(CrlSummary {
        issuer: crl.issuer().to_string(),
        next_update,
    })
}

/// One CRL as the validator watches it.
struct Watched {
    /// How messages name it.
    label: String,
    /// nextUpdate, Unix seconds.
    next_update: Option<u64>,
    /// When it was last warned about (Unix seconds), if ever.
    warned_at: Option<u64>,
}

/// The freshness of one validator's CRLs.
pub(crate) struct CrlFreshness {
    policy: ExpiredCrls,
    crls: Mutex<Vec<Watched>>,
    /// The earliest time (Unix seconds) at which a warning may be due: validations before
    /// it cost one atomic load.
    next_check: AtomicU64,
    /// The earliest nextUpdate, when expired CRLs refuse (Unix seconds).
    refuse_from: Option<u64>,
    warnings: AtomicU64,
}

impl CrlFreshness {
    pub(crate) fn new(crls: &[CertificateRevocationListDer<'_>], policy: ExpiredCrls) -> Self {
        let watched: Vec<Watched> = crls
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let summary = describe(der).ok();
                let next_update = summary
                    .as_ref()
                    .and_then(|s| s.next_update)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let issuer = summary.map_or_else(|| "an unreadable issuer".into(), |s| s.issuer);
                Watched {
                    label: format!("CRL #{} of [trust] crls (issuer {issuer})", i + 1),
                    next_update,
                    warned_at: None,
                }
            })
            .collect();
        let refuse_from = match policy {
            ExpiredCrls::Refuse => watched.iter().filter_map(|w| w.next_update).min(),
            ExpiredCrls::Warn => None,
        };
        let next_check = watched
            .iter()
            .filter_map(|w| w.next_update)
            .min()
            .unwrap_or(u64::MAX);
        Self {
            policy,
            crls: Mutex::new(watched),
            next_check: AtomicU64::new(next_check),
            refuse_from,
            warnings: AtomicU64::new(0),
        }
    }

    /// Changes what an expired CRL does.
    pub(crate) fn set_policy(&mut self, policy: ExpiredCrls) {
        let crls = self.crls.get_mut().unwrap_or_else(|p| p.into_inner());
        self.refuse_from = match policy {
            ExpiredCrls::Refuse => crls.iter().filter_map(|w| w.next_update).min(),
            ExpiredCrls::Warn => None,
        };
        self.policy = policy;
    }

    /// What webpki does with a CRL past its nextUpdate.
    pub(crate) fn expiration_policy(&self) -> webpki::ExpirationPolicy {
        match self.policy {
            ExpiredCrls::Refuse => webpki::ExpirationPolicy::Enforce,
            ExpiredCrls::Warn => webpki::ExpirationPolicy::Ignore,
        }
    }

    /// Until when (Unix seconds) a validation whose chain expires at `chain_expires` may be
    /// remembered: when expired CRLs refuse, no later than the earliest nextUpdate (after
    /// it, a full validation would refuse that issuer's chains).
    pub(crate) fn cache_until(&self, chain_expires: u64) -> u64 {
        self.refuse_from
            .map_or(chain_expires, |t| chain_expires.min(t))
    }

    /// Logs a warning for each CRL that has expired at `now` and was not warned about in
    /// the last [`WARNING_INTERVAL`].
    pub(crate) fn observe(&self, now: UnixTime) {
        for message in self.due(now.as_secs()) {
            tracing::warn!("{message}");
        }
    }

    /// The warnings due at `now` (Unix seconds); they count as given.
    fn due(&self, now: u64) -> Vec<String> {
        if now < self.next_check.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut crls = self.crls.lock().unwrap_or_else(|p| p.into_inner());
        let interval = WARNING_INTERVAL.as_secs();
        let mut messages = Vec::new();
        let mut next_check = u64::MAX;
        for crl in crls.iter_mut() {
            let Some(next_update) = crl.next_update else {
                continue;
            };
            if now < next_update {
                next_check = next_check.min(next_update);
                continue;
            }
            let due = crl
                .warned_at
                .is_none_or(|at| now >= at.saturating_add(interval));
            if due {
                crl.warned_at = Some(now);
                messages.push(self.message(crl, next_update));
            }
            let warned_at = crl.warned_at.unwrap_or(now);
            next_check = next_check.min(warned_at.saturating_add(interval));
        }
        self.next_check.store(next_check, Ordering::Relaxed);
        self.warnings
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        messages
    }

    fn message(&self, crl: &Watched, next_update: u64) -> String {
        let expired =
            crate::error::format_system_time(UNIX_EPOCH + Duration::from_secs(next_update));
        match self.policy {
            ExpiredCrls::Warn => format!(
                "{} expired at {expired} and may miss revocations made since; it is still used \
                 ([trust] expired_crls = \"warn\"): put a fresh CRL in its file and restart",
                crl.label
            ),
            ExpiredCrls::Refuse => format!(
                "{} expired at {expired}: certificates of its issuer are refused \
                 ([trust] expired_crls = \"refuse\") until a fresh CRL is in its file and the \
                 program restarts",
                crl.label
            ),
        }
    }

    /// How many warnings were given.
    #[cfg(test)]
    pub(crate) fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    };

    const T0: i64 = 1_900_000_000;
    const DAY: u64 = 86_400;

    /// A CA's CRL whose nextUpdate is `next_update` seconds after T0.
    fn crl(name: &str, next_update: i64) -> CertificateRevocationListDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let date = |offset: i64| time::OffsetDateTime::from_unix_timestamp(T0 + offset).unwrap();
        let crl = CertificateRevocationListParams {
            this_update: date(-10 * DAY as i64),
            next_update: date(next_update),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::new(params, key))
        .unwrap();
        CertificateRevocationListDer::from(crl.der().to_vec())
    }

    fn at(offset: u64) -> u64 {
        T0 as u64 + offset
    }

    #[test]
    fn describe_reads_issuer_and_next_update() {
        let summary = describe(&crl("Old CA", -5)).unwrap();
        assert_eq!(summary.issuer, "CN=Old CA");
        assert_eq!(
            summary.next_update,
            Some(UNIX_EPOCH + Duration::from_secs(T0 as u64 - 5))
        );
        assert!(describe(&CertificateRevocationListDer::from(vec![0x30, 0])).is_err());
    }

    /// Issue 12, item 14: an expired CRL was used without a word. Now each one is warned
    /// about when first seen (the platform's load) and then once a day, by the clock of
    /// the validations.
    #[test]
    fn expired_crls_are_warned_about_at_load_and_then_once_a_day() {
        let crls = [crl("Old CA", -5), crl("Soon CA", 3600)];
        let watch = CrlFreshness::new(&crls, ExpiredCrls::Warn);
        let load = watch.due(at(0));
        assert_eq!(load.len(), 1, "{load:?}");
        assert!(
            load[0].contains("CN=Old CA") && load[0].contains("still used"),
            "{load:?}"
        );
        assert!(watch.due(at(60)).is_empty(), "again within the day");
        // The second expires an hour later: warned about then, the first is not repeated.
        let soon = watch.due(at(3600));
        assert_eq!(soon.len(), 1);
        assert!(soon[0].contains("CN=Soon CA"), "{soon:?}");
        assert!(watch.due(at(DAY - 1)).is_empty());
        let next_day = watch.due(at(DAY));
        assert_eq!(next_day.len(), 1);
        assert!(next_day[0].contains("CN=Old CA"));
        assert_eq!(watch.due(at(DAY + 3600)).len(), 1);
        assert_eq!(watch.warnings(), 4);
        // A clock that went back warns about nothing new.
        assert!(watch.due(at(10)).is_empty());
    }

    /// Issue 12, item 14, with the chain cache: a validation remembered while the CRL was
    /// current must not answer once its nextUpdate has passed, when expired CRLs refuse.
    #[test]
    fn with_refuse_a_cached_validation_ends_at_the_crls_next_update() {
        use crate::verify::{ChainValidator, Usage};
        use rcgen::ExtendedKeyUsagePurpose;
        let date = |offset: i64| time::OffsetDateTime::from_unix_timestamp(T0 + offset).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = date(-(DAY as i64));
        ca.not_after = date(10 * DAY as i64);
        let root = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["host.example.test".to_string()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before = date(-(DAY as i64));
        leaf.not_after = date(5 * DAY as i64);
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .der()
            .clone();
        let crl = CertificateRevocationListParams {
            this_update: date(-(DAY as i64)),
            next_update: date(100),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let crls = [CertificateRevocationListDer::from(crl.der().to_vec())];
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let time = |offset: u64| UnixTime::since_unix_epoch(Duration::from_secs(at(offset)));

        let refuse = ChainValidator::new(std::slice::from_ref(&root), &crls, algorithms)
            .unwrap()
            .with_expired_crls(ExpiredCrls::Refuse);
        // Validate, and remember it as a completed handshake would.
        let check = |v: &ChainValidator, offset| {
            v.validate(&leaf, &[], time(offset), Usage::ClientAuth)
                .map(|path| v.remember(&path))
        };
        check(&refuse, 0).unwrap();
        check(&refuse, 99).unwrap();
        assert_eq!(
            refuse.cache_hits(),
            1,
            "remembered while the CRL is current"
        );
        assert!(
            matches!(
                check(&refuse, 100),
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ExpiredRevocationListContext { .. }
                ))
            ),
            "the cache outlived the CRL"
        );

        let warn = ChainValidator::new(std::slice::from_ref(&root), &crls, algorithms).unwrap();
        check(&warn, 0).unwrap();
        check(&warn, 100).unwrap();
        check(&warn, 2 * DAY).unwrap();
    }

    #[test]
    fn refusing_ends_cached_validations_at_the_earliest_next_update() {
        let crls = [crl("A", 7200), crl("B", 3600)];
        let warn = CrlFreshness::new(&crls, ExpiredCrls::Warn);
        assert_eq!(warn.cache_until(at(DAY)), at(DAY));
        assert_eq!(warn.expiration_policy(), webpki::ExpirationPolicy::Ignore);
        let refuse = CrlFreshness::new(&crls, ExpiredCrls::Refuse);
        assert_eq!(refuse.cache_until(at(DAY)), at(3600));
        assert_eq!(refuse.cache_until(at(60)), at(60));
        assert_eq!(
            refuse.expiration_policy(),
            webpki::ExpirationPolicy::Enforce
        );
        assert!(refuse.due(at(0)).is_empty(), "nothing has expired yet");
        assert!(refuse.due(at(3600))[0].contains("are refused"));
        let none = CrlFreshness::new(&[], ExpiredCrls::Refuse);
        assert_eq!(none.cache_until(at(DAY)), at(DAY));
        assert!(none.due(at(0)).is_empty());
    }
}
