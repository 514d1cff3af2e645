//! The user-authentication step as one sequence both front ends drive: after the handshake
//! and before any application byte, the frames of [`crate::user::step`] go through the TLS
//! session's plaintext, read exactly (never a byte of the application's), with the
//! throttle's pause before a server's FAILURE and the client's key derivation handed to
//! the front end (which runs it where it may block: inline, or on a blocking thread).
//!
//! The front end asks [`UserAuth::next`] what is needed and answers: send the queued TLS
//! bytes, receive TLS bytes into the session, wait until an instant, run a key derivation,
//! or stop (done, or failed: then the queued FAILURE frame and close_notify go out, and a
//! server lingers so that the client reads them).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::core::session::{Session, UserStep};
use crate::error::{Error, NegotiationError, Peer};
use crate::settings::UserCredentials;
use crate::user::step::{
    exchange_io_error, failure_pause, frame_error, ClientExchange, Frame, ServerExchange,
    ServerFailure, Step, MAX_FRAME,
};

/// What the user-authentication step needs from its front end next.
pub(crate) enum UserNeed {
    /// Send the queued TLS bytes (a frame was written).
    Send,
    /// Receive TLS bytes into the session (the next frame is incomplete).
    Receive,
    /// Wait until then (the throttle's pause before a FAILURE), then ask again.
    Pause(Instant),
    /// Run this key derivation (PBKDF2: it may take a second or more) where blocking is
    /// allowed, and give the result to [`UserAuth::derived`].
    Derive(Derivation),
    /// The step is over; application data may flow.
    Done,
    /// The step failed. A server sends what is queued (a FAILURE frame), shuts its write
    /// side (close_notify, FIN), and, `linger`, reads and discards what the client still
    /// sends before it closes (see `REFUSAL_LINGER`).
    Failed { error: Error, linger: bool },
}

/// The client's key derivation, to run off the caller's thread if it must not block.
pub(crate) struct Derivation {
    exchange: ClientExchange,
    frame: Frame,
}

/// The outcome of a [`Derivation`].
pub(crate) struct Derived {
    exchange: ClientExchange,
    step: Result<Step, NegotiationError>,
}

impl Derivation {
    /// Runs it (PBKDF2, as many iterations as the server asked and the client allows).
    pub(crate) fn run(self) -> Derived {
        let Derivation {
            mut exchange,
            frame,
        } = self;
        let step = exchange.on_frame(frame);
        Derived { exchange, step }
    }
}

/// The user-authentication step of one connection; see the module.
pub(crate) struct UserAuth {
    role: Role,
    /// The frame being read: its header, then its payload.
    incoming: Vec<u8>,
    /// The handshake's deadline and timeout (the step runs within them).
    deadline: Instant,
    timeout: Duration,
    /// The other side: a server's failures linger, so that the client reads them.
    peer: Peer,
    state: State,
}

enum Role {
    /// Not negotiated: nothing to do.
    Skip,
    Client(Option<ClientExchange>),
    Server(Box<ServerExchange>),
}

enum State {
    Exchanging,
    /// The throttle's pause before the FAILURE frame goes out.
    Pausing {
        until: Instant,
        failure: Box<ServerFailure>,
    },
    /// Over; the outcome is given once what is queued has been sent.
    Ending(Option<Result<(), Error>>),
}

/// The frame header: type (1 byte) and length (2 bytes).
const HEADER: usize = 3;

impl UserAuth {
    /// The step after `session`'s handshake: the client proves `credentials` (none: it
    /// says so), the server (a connection from `peer`) checks them. `deadline` and
    /// `timeout` are the handshake's. A client's first frame (HELLO) is queued.
    pub(crate) fn start(
        session: &mut Session,
        credentials: Option<&UserCredentials>,
        peer: IpAddr,
        deadline: Instant,
    ) -> Self {
        let timeout = session.handshake_timeout();
        let mut auth = UserAuth {
            role: Role::Skip,
            incoming: Vec::with_capacity(HEADER),
            deadline,
            timeout,
            peer: session.peer(),
            state: State::Ending(Some(Ok(()))),
        };
        let ctx = session.context();
        let binding = match session.user_step() {
            Ok(UserStep::Skip) => return auth,
            Ok(UserStep::Refuse) => {
                auth.state = State::Ending(Some(Err(
                    NegotiationError::UserAuthenticationRequired.into()
                )));
                return auth;
            }
            Ok(UserStep::Exchange { binding }) => binding,
            Err(e) => {
                auth.state = State::Ending(Some(Err(e.into())));
                return auth;
            }
        };
        auth.state = State::Exchanging;
        if session.peer() == Peer::Client {
            auth.role = Role::Server(Box::new(ServerExchange::new(
                ctx.users.clone(),
                ctx.validator.clone(),
                &binding,
                ctx.provider.clone(),
                peer,
            )));
            return auth;
        }
        match ClientExchange::start(
            credentials,
            &binding,
            &ctx.provider,
            ctx.user_max_iterations,
        ) {
            Ok((exchange, hello)) => {
                auth.role = Role::Client(Some(exchange));
                auth.write(session, &hello);
            }
            Err(e) => auth.state = State::Ending(Some(Err(e.into()))),
        }
        auth
    }

    /// What is needed next, at `now`.
    pub(crate) fn next(&mut self, session: &mut Session, now: Instant) -> UserNeed {
        loop {
            // Frames written go out before anything is waited for.
            if session.wants_send() {
                return UserNeed::Send;
            }
            match &mut self.state {
                State::Ending(outcome) => {
                    return match outcome.take() {
                        Some(Ok(())) | None => UserNeed::Done,
                        Some(Err(error)) => UserNeed::Failed {
                            error,
                            linger: self.peer == Peer::Client,
                        },
                    }
                }
                State::Pausing { until, .. } if now < *until => return UserNeed::Pause(*until),
                State::Pausing { .. } => {
                    let State::Pausing { failure, .. } =
                        std::mem::replace(&mut self.state, State::Exchanging)
                    else {
                        unreachable!("matched above")
                    };
                    self.fail(session, *failure);
                }
                State::Exchanging => {
                    let frame = match self.read_frame(session) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return UserNeed::Receive,
                        Err(error) => return self.io_failed(error),
                    };
                    if let Some(need) = self.on_frame(session, frame, now) {
                        return need;
                    }
                }
            }
        }
    }

    /// The outcome of the [`Derivation`] [`UserAuth::next`] handed out.
    pub(crate) fn derived(&mut self, session: &mut Session, derived: Derived) {
        let Derived { exchange, step } = derived;
        self.role = Role::Client(Some(exchange));
        self.client_step(session, step);
    }

    /// A socket failure while sending or receiving: what the step reports.
    pub(crate) fn io_failed(&mut self, e: std::io::Error) -> UserNeed {
        let error = exchange_io_error(e, self.peer, self.timeout).into();
        self.state = State::Ending(None);
        // The connection broke or timed out: nothing to linger for.
        UserNeed::Failed {
            error,
            linger: false,
        }
    }

    /// Reads the next frame from the session's plaintext, exactly: `None` while it is
    /// incomplete.
    fn read_frame(&mut self, session: &mut Session) -> std::io::Result<Option<Frame>> {
        loop {
            let wanted = if self.incoming.len() < HEADER {
                HEADER
            } else {
                let len = usize::from(u16::from_be_bytes([self.incoming[1], self.incoming[2]]));
                if len > MAX_FRAME {
                    // Frame::decode says so, with the peer's side.
                    HEADER
                } else {
                    HEADER + len
                }
            };
            if self.incoming.len() >= wanted {
                let wire = std::mem::take(&mut self.incoming);
                return match Frame::decode(&wire) {
                    Ok(Some((frame, _))) => Ok(Some(frame)),
                    Ok(None) => Err(frame_error(self.peer, "a truncated message")),
                    Err(detail) => Err(frame_error(self.peer, &detail)),
                };
            }
            let have = self.incoming.len();
            self.incoming.resize(wanted, 0);
            match session.read_plain(&mut self.incoming[have..]) {
                Ok(0) => {
                    self.incoming.truncate(have);
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => self.incoming.truncate(have + n),
                Err(e) => {
                    self.incoming.truncate(have);
                    return match e.kind() {
                        std::io::ErrorKind::WouldBlock => Ok(None),
                        _ => Err(e),
                    };
                }
            }
        }
    }

    /// Takes one frame; `Some` when the front end must act before the step goes on.
    fn on_frame(&mut self, session: &mut Session, frame: Frame, now: Instant) -> Option<UserNeed> {
        match &mut self.role {
            Role::Skip => None,
            Role::Client(exchange) => {
                let mut exchange = exchange.take()?;
                if exchange.derives_keys(&frame) {
                    return Some(UserNeed::Derive(Derivation { exchange, frame }));
                }
                let step = exchange.on_frame(frame);
                self.role = Role::Client(Some(exchange));
                self.client_step(session, step);
                None
            }
            Role::Server(exchange) => {
                match exchange.on_frame(frame, now) {
                    Ok(Step::Send(frame)) => self.write(session, &frame),
                    Ok(Step::Done(last, identity)) => {
                        if let Some(frame) = last {
                            self.write(session, &frame);
                        }
                        session.set_application(identity);
                        self.state = State::Ending(Some(Ok(())));
                    }
                    Err(failure) => {
                        let pause = failure_pause(failure.delay, now, self.deadline, self.timeout);
                        if pause.is_zero() {
                            self.fail(session, failure);
                        } else {
                            self.state = State::Pausing {
                                until: now + pause,
                                failure: Box::new(failure),
                            };
                        }
                    }
                }
                None
            }
        }
    }

    fn client_step(&mut self, session: &mut Session, step: Result<Step, NegotiationError>) {
        match step {
            Ok(Step::Send(frame)) => self.write(session, &frame),
            Ok(Step::Done(..)) => self.state = State::Ending(Some(Ok(()))),
            Err(e) => self.state = State::Ending(Some(Err(e.into()))),
        }
    }

    /// The server's refusal: the generic FAILURE frame is queued; the detail is what the
    /// server's caller gets.
    fn fail(&mut self, session: &mut Session, failure: ServerFailure) {
        self.write(session, &failure.frame);
        self.state = State::Ending(Some(Err(failure.reason.into())));
    }

    /// Queues a frame (whole: frames are at most 16 KiB, within what rustls buffers).
    fn write(&mut self, session: &mut Session, frame: &Frame) {
        let wire = frame.encode();
        match session.write_plain(&[std::io::IoSlice::new(&wire)]) {
            Ok(n) if n == wire.len() => {}
            Ok(n) => {
                let e = std::io::Error::other(format!(
                    "only {n} of a {}-byte message could be queued",
                    wire.len()
                ));
                self.state = State::Ending(Some(Err(Error::Io(e))));
            }
            Err(e) => self.state = State::Ending(Some(Err(Error::Io(e)))),
        }
    }
}
