//! The record layer's crypto alone: AES-128-GCM sealing and opening 16 KiB records in
//! memory with aws-lc-rs (the provider of both TLS stacks and the suite they negotiate),
//! no I/O and no copies. Whatever a TLS stack does, each KiB it carries costs the sender a
//! seal and the receiver an open on top of what plain TCP costs; so, with TCP's CPU per
//! KiB from the same run, this bounds what any TLS stack can reach against plain TCP here.

use std::time::Instant;

use anyhow::anyhow;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};

use super::stats;

/// One TLS record's worth of plaintext, the most TLS carries per record.
const RECORD: usize = 16 * 1024;

/// The medians of the crypto floor's runs, in ns per KiB of plaintext.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    pub seal_ns_per_kib: f64,
    pub open_ns_per_kib: f64,
}

impl Floor {
    /// The throughput a TLS stack can reach at most, as a fraction of TCP's, when sender
    /// and receiver share one CPU and TCP costs `tcp_ns_per_kib` ([client, server]) there:
    /// the time per KiB is at least TCP's plus a seal plus an open.
    pub fn ceiling_vs_tcp(&self, tcp_ns_per_kib: [f64; 2]) -> f64 {
        let tcp = tcp_ns_per_kib[0] + tcp_ns_per_kib[1];
        tcp / (tcp + self.seal_ns_per_kib + self.open_ns_per_kib)
    }
}

/// Seals, then seals and opens, `bytes` in 16 KiB records, `runs` times; the medians. An
/// open is timed as a seal-and-open pair less a seal (opening needs a record just sealed
/// under the same nonce; copying one in would add a memcpy the stacks do not make).
pub fn measure(bytes: u64, runs: usize) -> anyhow::Result<Floor> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, &[0x42; 16]).map_err(|_| anyhow!("an AES-128 key"))?,
    );
    let records = (bytes / RECORD as u64).max(1);
    let kib = (records * RECORD as u64) as f64 / 1024.0;
    // A TLS 1.3 record: the plaintext, its content type, and room for the tag.
    let mut record = vec![0x5a_u8; RECORD + 1];
    let aad = [0x17, 0x03, 0x03, 0x40, 0x11];
    let nonce = |seq: u64| {
        let mut n = [0u8; NONCE_LEN];
        n[NONCE_LEN - 8..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        for seq in 0..records {
            let tag = key
                .seal_in_place_separate_tag(nonce(seq), Aad::from(aad), &mut record)
                .map_err(|_| anyhow!("sealing a record"))?;
            let _ = std::hint::black_box(tag);
        }
        let sealing = started.elapsed().as_nanos() as f64;
        let started = Instant::now();
        for seq in 0..records {
            let tag = key
                .seal_in_place_separate_tag(nonce(seq), Aad::from(aad), &mut record)
                .map_err(|_| anyhow!("sealing a record"))?;
            record.extend_from_slice(tag.as_ref());
            let plain = key
                .open_in_place(nonce(seq), Aad::from(aad), &mut record)
                .map_err(|_| anyhow!("opening the record just sealed"))?;
            let len = plain.len();
            record.truncate(len);
        }
        let both = started.elapsed().as_nanos() as f64;
        seal.push(sealing / kib);
        open.push((both - sealing).max(0.0) / kib);
    }
    Ok(Floor {
        seal_ns_per_kib: stats::median(&seal).unwrap_or(0.0),
        open_ns_per_kib: stats::median(&open).unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_it_seals_and_bounds_below_tcp() {
        let floor = measure(1 << 20, 3).unwrap();
        assert!(floor.seal_ns_per_kib > 0.0 && floor.open_ns_per_kib > 0.0);
        let ceiling = floor.ceiling_vs_tcp([100.0, 300.0]);
        assert!(ceiling > 0.0 && ceiling < 1.0, "{ceiling}");
    }
}
