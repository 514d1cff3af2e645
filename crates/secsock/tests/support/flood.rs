//! A flood of silent TCP connections from one source address, the slow-peers attack of
//! issue 12 (item 6): many connections that never send a byte, each pinning a handshake
//! slot until the server's handshake timeout, opened faster than they time out. Shared by
//! the library's and the command's tests (`#[path]`-included), so std and socket2 only.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// A flood in progress; dropping it stops it and closes its connections.
pub struct Flood {
    stop: Arc<AtomicBool>,
    adding: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    worker: Option<thread::JoinHandle<()>>,
}

impl Flood {
    /// Opens `initial` silent connections from `from` to `to`, then `per_second` more
    /// each second for `duration`, keeping them all open. Returns once the initial ones
    /// are open (connections the server refused count: they were opened).
    pub fn start(
        from: IpAddr,
        to: SocketAddr,
        initial: usize,
        per_second: usize,
        duration: Duration,
    ) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let adding = Arc::new(AtomicBool::new(true));
        let opened = Arc::new(AtomicUsize::new(0));
        let (ready, initial_done) = mpsc::channel();
        let worker = {
            let (stop, adding, opened) = (stop.clone(), adding.clone(), opened.clone());
            thread::spawn(move || {
                let mut held = Vec::new();
                let open = |held: &mut Vec<TcpStream>| {
                    if let Some(stream) = silent_connection(from, to) {
                        held.push(stream);
                    }
                    opened.fetch_add(1, Ordering::SeqCst);
                };
                for _ in 0..initial {
                    open(&mut held);
                }
                let _ = ready.send(());
                let started = Instant::now();
                let mut made = 0usize;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < duration {
                    // Pace the load: `per_second` connections per second of elapsed time.
                    let due = (started.elapsed().as_secs_f64() * per_second as f64) as usize;
                    if made < due {
                        open(&mut held);
                        made += 1;
                    } else {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
                adding.store(false, Ordering::SeqCst);
                // Keep them open until stopped.
                while !stop.load(Ordering::SeqCst) {
                    thread::park_timeout(Duration::from_millis(50));
                }
            })
        };
        initial_done
            .recv_timeout(Duration::from_secs(60))
            .expect("the flood's initial connections opened within 60 s");
        Flood {
            stop,
            adding,
            opened,
            worker: Some(worker),
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// Whether the flood is still adding connections.
    pub fn is_running(&self) -> bool {
        self.adding.load(Ordering::SeqCst)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            worker.thread().unpark();
            let _ = worker.join();
        }
    }
}

/// One TCP connection from `from` to `to` that will never send a byte.
fn silent_connection(from: IpAddr, to: SocketAddr) -> Option<TcpStream> {
    let domain = socket2::Domain::for_address(to);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .ok()?;
    Some(socket.into())
}

/// Raises the soft limit on open files to `wanted` (or the hard limit, if lower); returns
/// the limit now in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    let hard = current.maximum.unwrap_or(u64::MAX);
    let soft = current.current.unwrap_or(u64::MAX);
    let target = wanted.min(hard);
    if soft < target
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: current.maximum,
            },
        )
        .is_ok()
    {
        return target;
    }
    soft
}
