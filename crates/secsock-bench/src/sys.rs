//! The one place this crate calls the C library directly.

/// Returns the allocator's free memory to the kernel (glibc `malloc_trim(0)`: every
/// arena, including free pages inside the heap), so that one phase's freed connections
/// are not reused by the next phase and hidden from its resident-memory growth.
/// A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own
        // state under its own locks, and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A counting global allocator (cargo feature `heap-profile`): live heap bytes and live
/// allocations by size class, so that memory per connection can be split into what the
/// program keeps and what the allocator holds on to. Off by default: counting costs a
/// few atomic operations per allocation, which the handshake figures should not pay.
#[cfg(feature = "heap-profile")]
pub mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicI64, Ordering};

    /// Size classes: up to 16 bytes, then powers of two up to 1 MiB, then larger.
    pub const CLASSES: usize = 18;

    static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
    static CLASS_COUNT: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
    static CLASS_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

    /// The upper bound of size class `i` (the last class has none).
    pub fn class_limit(i: usize) -> Option<usize> {
        (i + 1 < CLASSES).then(|| 16usize << i)
    }

    fn class_of(size: usize) -> usize {
        let mut i = 0;
        while i + 1 < CLASSES && size > (16usize << i) {
            i += 1;
        }
        i
    }

    fn record(size: usize, sign: i64) {
        let class = class_of(size);
        LIVE_BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
        CLASS_COUNT[class].fetch_add(sign, Ordering::Relaxed);
        CLASS_BYTES[class].fetch_add(sign * size as i64, Ordering::Relaxed);
    }

    /// Live heap at one moment.
    #[derive(Clone, Debug)]
    pub struct Snapshot {
        /// Bytes requested and not yet freed.
        pub live_bytes: i64,
        /// Live allocations per size class.
        pub count: [i64; CLASSES],
        /// Live bytes per size class.
        pub bytes: [i64; CLASSES],
    }

    /// The live heap now.
    pub fn snapshot() -> Snapshot {
        Snapshot {
            live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
            count: std::array::from_fn(|i| CLASS_COUNT[i].load(Ordering::Relaxed)),
            bytes: std::array::from_fn(|i| CLASS_BYTES[i].load(Ordering::Relaxed)),
        }
    }

    /// The system allocator, counted.
    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator, which upholds
    // GlobalAlloc's contract; the counting only reads sizes from the layouts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc` is passed on as is.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                record(layout.size(), 1);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                record(layout.size(), 1);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by this allocator (so by System) with `layout`.
            unsafe { System.dealloc(ptr, layout) };
            record(layout.size(), -1);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's contract for `realloc` is passed on as is.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                record(layout.size(), -1);
                record(new_size, 1);
            }
            p
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}
