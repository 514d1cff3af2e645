//! Large socket reads for bulk transfers, without a large buffer per idle connection.
//!
//! rustls's `read_tls` reads into its deframer buffer, which holds about one record: at
//! most ~16 KiB per call, 4 KiB when it starts empty. A bulk receiver fed that way costs
//! far more CPU per KiB than one fed from a larger buffer (docs/PERFORMANCE.md: 793 against
//! 511 ns/KiB on loopback, mostly in rustls's own plaintext copy).
//! [`ReadAhead`] sits between the socket and `read_tls`: while data arrives in bulk it reads
//! up to [`CAPACITY`] bytes per syscall and hands them to rustls from memory (one memcpy,
//! far cheaper than the syscalls it replaces). It allocates its buffer only when a read
//! fills rustls's whole window (a sign that more is waiting) and frees it when the socket
//! gives less than [`SHRINK_BELOW`], so an idle or chatty connection keeps no buffer.

use std::io::{self, Read};

/// Bytes read from the socket per syscall while in bulk mode.
pub const CAPACITY: usize = 64 * 1024;

/// A socket read shorter than this ends bulk mode (the buffer is freed once drained).
pub const SHRINK_BELOW: usize = 16 * 1024;

/// Bytes read but not yet handed to rustls, and whether bulk mode is on.
#[derive(Debug, Default)]
pub struct ReadAhead {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    bulk: bool,
}

impl ReadAhead {
    /// A reader that fills `out` from the buffer, or from `io`.
    pub fn reader<'a>(&'a mut self, io: &'a mut dyn Read) -> Reader<'a> {
        Reader { ahead: self, io }
    }

    /// Bytes held for rustls.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether a buffer is allocated (for tests and memory accounting).
    #[cfg(test)]
    pub fn is_allocated(&self) -> bool {
        self.buf.capacity() > 0
    }
}

/// See [`ReadAhead::reader`].
pub struct Reader<'a> {
    ahead: &'a mut ReadAhead,
    io: &'a mut dyn Read,
}

impl Read for Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let ahead = &mut *self.ahead;
        if ahead.buffered() == 0 {
            if !ahead.bulk {
                let n = self.io.read(out)?;
                // A read that filled the caller's whole window: more is waiting.
                if n == out.len() && n > 0 {
                    ahead.bulk = true;
                }
                return Ok(n);
            }
            if ahead.buf.len() < CAPACITY {
                ahead.buf.resize(CAPACITY, 0);
            }
            let n = self.io.read(&mut ahead.buf)?;
            ahead.start = 0;
            ahead.end = n;
            if n < SHRINK_BELOW {
                ahead.bulk = false;
            }
        }
        let n = ahead.buffered().min(out.len());
        out[..n].copy_from_slice(&ahead.buf[ahead.start..ahead.start + n]);
        ahead.start += n;
        if ahead.buffered() == 0 && !ahead.bulk {
            // Drained after the transfer slowed down: give the memory back.
            ahead.buf = Vec::new();
            ahead.start = 0;
            ahead.end = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that returns the scripted chunk sizes from a byte sequence.
    struct Script {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        calls: usize,
    }

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes.get(self.calls).copied().unwrap_or(usize::MAX);
            self.calls += 1;
            let n = want.min(out.len()).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn bulk_reads_are_large_and_every_byte_arrives_in_order() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut socket = Script {
            data: data.clone(),
            pos: 0,
            sizes: vec![],
            calls: 0,
        };
        let mut ahead = ReadAhead::default();
        let mut got = Vec::new();
        let mut window = [0u8; 4096];
        loop {
            let n = ahead.reader(&mut socket).read(&mut window).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&window[..n]);
        }
        assert_eq!(got, data);
        // 1 MB in 4 KiB windows would be 245 reads; in bulk mode it is ~16 of 64 KiB.
        assert!(socket.calls < 30, "{} socket reads", socket.calls);
        assert!(!ahead.is_allocated(), "freed at the end");
    }

    #[test]
    fn small_messages_never_allocate() {
        let data = vec![1u8; 10 * 100];
        let mut socket = Script {
            data,
            pos: 0,
            sizes: vec![100; 10],
            calls: 0,
        };
        let mut ahead = ReadAhead::default();
        let mut window = [0u8; 4096];
        for _ in 0..10 {
            assert_eq!(ahead.reader(&mut socket).read(&mut window).unwrap(), 100);
            assert!(!ahead.is_allocated());
        }
    }

    #[test]
    fn the_buffer_goes_away_when_the_transfer_slows_down() {
        let data = vec![3u8; 200_000];
        // A full window (bulk starts), one 64 KiB read, then short reads.
        let mut socket = Script {
            data,
            pos: 0,
            sizes: vec![4096, 65536, 1000, 1000],
            calls: 0,
        };
        let mut ahead = ReadAhead::default();
        let mut window = [0u8; 4096];
        let mut total = 0;
        let mut saw_allocated = false;
        for _ in 0..20 {
            total += ahead.reader(&mut socket).read(&mut window).unwrap();
            saw_allocated |= ahead.is_allocated();
            if socket.calls >= 3 && ahead.buffered() == 0 {
                break;
            }
        }
        assert!(saw_allocated);
        assert_eq!(total, 4096 + 65536 + 1000);
        assert!(!ahead.is_allocated(), "freed after a short read drained");
    }

    #[test]
    fn errors_and_eof_pass_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        let mut ahead = ReadAhead {
            bulk: true,
            ..ReadAhead::default()
        };
        let err = ahead.reader(&mut Failing).read(&mut [0u8; 10]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let mut empty = Script {
            data: vec![],
            pos: 0,
            sizes: vec![],
            calls: 0,
        };
        assert_eq!(ahead.reader(&mut empty).read(&mut [0u8; 10]).unwrap(), 0);
    }
}
