//! [`ConsumerDriver`]: a mio loop over many producers, with the bookkeeping
//! done (poll timeouts, which token to serve, the first drain after
//! registering, accepting through a [`MioListener`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};
use shmring::handshake::PeerCred;
use shmring::{Config, Consumer, Pod};

use crate::{Error, MioConsumer, MioListener, Readiness, Result, WakeStats};

/// Tokens from this one up belong to a [`ConsumerDriver`]; the ones below are
/// free for sources of your own (see [`ConsumerDriver::registry`]).
pub const FIRST_DRIVER_TOKEN: Token = Token(1 << 24);

/// The listener's token (the first of the driver's range).
const LISTENER: Token = FIRST_DRIVER_TOKEN;

/// What a [`ConsumerDriver::run_once`] hands to its callback.
#[derive(Debug)]
pub enum DriverEvent<'a, T> {
    /// A producer connected through the listener (see
    /// [`ConsumerDriver::listen`]); its items will come under `token`.
    Connected {
        /// The token of its consumer.
        token: Token,
        /// Its credentials.
        peer: PeerCred,
    },
    /// Items from the producer of `token`, in order (local copies).
    Items {
        /// Which consumer.
        token: Token,
        /// The items.
        items: &'a [T],
    },
    /// The producer of `token` is gone and everything it committed was
    /// delivered: the consumer was deregistered and dropped.
    Closed {
        /// Which consumer.
        token: Token,
        /// Its wake-up counters.
        stats: WakeStats,
    },
    /// The consumer of `token` failed (a corrupted ring, a registry
    /// failure): it was deregistered and dropped.
    Failed {
        /// Which consumer.
        token: Token,
        /// Why.
        error: Error,
    },
    /// The producer of `token` flooded its wake-up fd with empty wake-ups
    /// (see [`FloodPolicy`](crate::FloodPolicy)): its wake-up fd is out of
    /// the `Poll` until `until` (the driver resumes it then). Reported when
    /// a pause starts, not again while it lasts.
    Throttled {
        /// Which consumer.
        token: Token,
        /// End of the pause.
        until: Instant,
    },
    /// A connecting peer's handshake failed (type mismatch, refused uid,
    /// silent past its deadline, ...); the listener goes on.
    Refused(Error),
    /// An event for a source of your own (a token below
    /// [`FIRST_DRIVER_TOKEN`], registered through
    /// [`ConsumerDriver::registry`]).
    Other(&'a mio::event::Event),
}

#[derive(Debug)]
struct Entry<T: Pod> {
    rx: MioConsumer<T>,
    state: Readiness,
}

/// One thread consuming from any number of producers, each a
/// [`MioConsumer`], in one [`Poll`]; optionally accepting new ones from a
/// [`MioListener`].
///
/// [`run_once`](Self::run_once) does all of the edge-triggered bookkeeping
/// (see the [crate docs](crate)): it computes the `poll` timeout from the
/// consumers' [`Readiness`] (`Ready`: zero; `Throttled`: its instant) and the
/// listener's handshake deadlines, serves every token that fired or is due,
/// drains each new consumer once right after registering it (which arms its
/// wake-up), accepts and registers connecting producers, and drops the
/// consumers whose producer left. What is left to you is the match on
/// [`DriverEvent`]:
///
/// ```
/// use std::time::Duration;
/// use shmring::{channel, Config};
/// use shmring_mio::{ConsumerDriver, DriverEvent};
///
/// let mut driver = ConsumerDriver::<u64>::new()?;
/// let mut producers = Vec::new();
/// for _ in 0..2 {
///     let (mut tx, rx) = channel::pair::<u64>(&Config::new(256))?;
///     driver.add(rx)?;
///     producers.push(std::thread::spawn(move || {
///         for i in 0..10_000u64 {
///             tx.push_blocking(i, Some(Duration::from_secs(5))).unwrap();
///         }
///     })); // dropping `tx` hangs up: the driver reports `Closed`
/// }
///
/// let (mut sum, mut closed) = (0u64, 0);
/// while closed < 2 {
///     driver.run_once(Some(Duration::from_secs(1)), |event| match event {
///         DriverEvent::Items { items, .. } => sum += items.iter().sum::<u64>(),
///         DriverEvent::Closed { .. } => closed += 1,
///         DriverEvent::Failed { token, error } => panic!("{token:?}: {error}"),
///         _ => {}
///     })?;
/// }
/// assert_eq!(sum, 2 * (0..10_000u64).sum::<u64>());
/// assert!(driver.is_empty());
/// for p in producers {
///     p.join().unwrap();
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Across processes, [`listen`](Self::listen) on a socket path instead of
/// [`add`](Self::add)ing consumers: producers that connect there (with
/// [`shmring::handshake::connect_producer`]) arrive as
/// [`DriverEvent::Connected`] (see the [crate docs](crate) for that loop).
///
/// # Errors
///
/// Only failures of the driver's own `Poll` or listener are errors of its
/// methods ([`Error::Registry`], [`Error::Shmring`] from the listener); what
/// goes wrong with one producer or one connecting peer comes to the callback
/// of [`run_once`](Self::run_once) as [`DriverEvent::Failed`] or
/// [`DriverEvent::Refused`], and the loop goes on.
#[derive(Debug)]
pub struct ConsumerDriver<T: Pod> {
    poll: Poll,
    events: Events,
    listener: Option<(MioListener, Config)>,
    consumers: HashMap<Token, Entry<T>>,
    next_token: usize,
    due: Vec<Token>,
}

impl<T: Pod> ConsumerDriver<T> {
    /// A driver with its own [`Poll`] and no consumers yet.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if the `Poll` cannot be created (out of fds).
    pub fn new() -> Result<Self> {
        let poll = Poll::new().map_err(|source| Error::Registry {
            context: "create a mio Poll",
            source,
        })?;
        Ok(ConsumerDriver {
            poll,
            events: Events::with_capacity(256),
            listener: None,
            consumers: HashMap::new(),
            next_token: LISTENER.0 + 1,
            due: Vec::new(),
        })
    }

    /// The registry of the driver's `Poll`, for sources of your own: register
    /// them with tokens below [`FIRST_DRIVER_TOKEN`]; their events come as
    /// [`DriverEvent::Other`].
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Accepts producers from `listener` from now on, serving each a channel
    /// made with `config`. A listener given before is deregistered and dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if the listener cannot be registered (the previous
    /// one, if any, then stays).
    pub fn listen(&mut self, mut listener: MioListener, config: Config) -> Result<()> {
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|source| Error::Registry {
                context: "register the listener",
                source,
            })?;
        if let Some((mut old, _)) = self.listener.replace((listener, config)) {
            let _ = self.poll.registry().deregister(&mut old);
        }
        Ok(())
    }

    /// Adds a consumer (from [`shmring::channel::pair`], a handshake, ...);
    /// returns its token. It is drained at the next
    /// [`run_once`](Self::run_once), whatever events come.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if its fds cannot be registered (the consumer is
    /// dropped).
    pub fn add(&mut self, consumer: Consumer<T>) -> Result<Token> {
        self.add_source(MioConsumer::new(consumer))
    }

    /// Like [`add`](Self::add), for a consumer already wrapped (with a flood
    /// policy or budget of your choice). It must not be registered.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if it cannot be registered (it was registered
    /// already, or `epoll_ctl` failed); the consumer is dropped.
    pub fn add_source(&mut self, mut rx: MioConsumer<T>) -> Result<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.poll
            .registry()
            .register(&mut rx, token, Interest::READABLE)
            .map_err(|source| Error::Registry {
                context: "register a consumer",
                source,
            })?;
        // Until it announces a sleep the producer has no reason to write the
        // wake-up fd: drain once at once.
        self.consumers.insert(
            token,
            Entry {
                rx,
                state: Readiness::Ready,
            },
        );
        Ok(token)
    }

    /// Deregisters the consumer of `token` and hands it back.
    pub fn remove(&mut self, token: Token) -> Option<MioConsumer<T>> {
        let mut e = self.consumers.remove(&token)?;
        let _ = self.poll.registry().deregister(&mut e.rx);
        Some(e.rx)
    }

    /// The consumer of `token`.
    pub fn get(&self, token: Token) -> Option<&MioConsumer<T>> {
        self.consumers.get(&token).map(|e| &e.rx)
    }

    /// Consumers served now.
    pub fn len(&self) -> usize {
        self.consumers.len()
    }

    /// Whether no consumer is served.
    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    /// When the loop next has something to do on its own (a consumer with
    /// items left over: now; a throttled one; a handshake deadline).
    fn next_due(&self) -> Option<Instant> {
        let mut at = self.listener.as_ref().and_then(|(l, _)| l.next_deadline());
        for e in self.consumers.values() {
            let t = match e.state {
                Readiness::Ready => Instant::now(),
                Readiness::Throttled(t) => t,
                _ => continue,
            };
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        at
    }

    /// Waits up to `timeout` (`None`: until something happens) for events,
    /// then serves everything that is due, calling `f` with what happened.
    /// Returns early when something was served; call it in a loop.
    ///
    /// # Errors
    ///
    /// A failure of the `Poll` ([`Error::Registry`]; an interrupted wait is
    /// not one) or of the listener (see
    /// [`MioListener::accept_consumers`]), or a consumer that connected but
    /// could not be registered ([`Error::Registry`]). Per-consumer and
    /// per-handshake failures come as [`DriverEvent::Failed`] and
    /// [`DriverEvent::Refused`] instead.
    pub fn run_once<F>(&mut self, timeout: Option<Duration>, mut f: F) -> Result<()>
    where
        F: FnMut(DriverEvent<'_, T>),
    {
        let now = Instant::now();
        let mut wait = timeout;
        if let Some(at) = self.next_due() {
            let d = at.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if let Err(source) = self.poll.poll(&mut self.events, wait) {
            if source.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Registry {
                    context: "poll",
                    source,
                });
            }
        }
        let now = Instant::now();
        self.due.clear();
        for ev in self.events.iter() {
            if ev.token() < FIRST_DRIVER_TOKEN {
                f(DriverEvent::Other(ev));
            } else {
                self.due.push(ev.token());
            }
        }
        for (&t, e) in &self.consumers {
            match e.state {
                Readiness::Ready => self.due.push(t),
                Readiness::Throttled(until) if until <= now => self.due.push(t),
                _ => {}
            }
        }
        if let Some((l, _)) = &self.listener {
            if l.next_deadline().is_some_and(|d| d <= now) {
                self.due.push(LISTENER);
            }
        }
        self.due.sort();
        self.due.dedup();
        if self.due.first() == Some(&LISTENER) {
            self.accept(&mut f)?;
        }
        let due = std::mem::take(&mut self.due);
        for &token in &due {
            self.serve(token, &mut f);
        }
        self.due = due;
        Ok(())
    }

    /// Accepts what the listener has, registers the new consumers (drained
    /// in this same round).
    fn accept<F>(&mut self, f: &mut F) -> Result<()>
    where
        F: FnMut(DriverEvent<'_, T>),
    {
        let Some((listener, config)) = self.listener.as_mut() else {
            return Ok(());
        };
        let arrivals = listener.accept_consumers::<T>(self.poll.registry(), config)?;
        for r in arrivals {
            match r {
                Ok(acc) => {
                    let token = self.add_source(acc.endpoint)?;
                    f(DriverEvent::Connected {
                        token,
                        peer: acc.peer,
                    });
                    self.due.push(token);
                }
                Err(e) => f(DriverEvent::Refused(e)),
            }
        }
        Ok(())
    }

    /// One drain of the consumer of `token` (if it still exists).
    fn serve<F>(&mut self, token: Token, f: &mut F)
    where
        F: FnMut(DriverEvent<'_, T>),
    {
        let Some(e) = self.consumers.get_mut(&token) else {
            return;
        };
        let result = e.rx.drain_with(self.poll.registry(), |items| {
            f(DriverEvent::Items { token, items })
        });
        match result {
            Ok(Readiness::Closed) => {
                let stats = e.rx.wake_stats();
                self.remove(token);
                f(DriverEvent::Closed { token, stats });
            }
            Ok(state) => {
                let was_throttled = matches!(e.state, Readiness::Throttled(_));
                e.state = state;
                if let Readiness::Throttled(until) = state {
                    if !was_throttled {
                        f(DriverEvent::Throttled { token, until });
                    }
                }
            }
            Err(error) => {
                self.remove(token);
                f(DriverEvent::Failed { token, error });
            }
        }
    }
}
