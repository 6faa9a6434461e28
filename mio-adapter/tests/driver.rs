//! `ConsumerDriver` (issue 19): two producer processes through a listener,
//! every item in order per token, both exits, a producer of another type
//! refused with both types named; consumers added by hand are drained
//! without any event; a producer that never idles does not starve another
//! (the driver comes back to a consumer left `Ready` without an event).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use mio::Token;
use shmring::{channel, handshake, Config, SignalKind};
use shmring_mio::{ConsumerDriver, DriverEvent, Error};

child_test!();

#[test]
fn two_producer_processes_through_the_listener_and_a_wrong_type_refused() {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("driver");
    let config = common::config(SignalKind::Socket, 1024);
    let mut driver = ConsumerDriver::<u64>::new().unwrap();
    driver.listen(common::bind(&path), config.clone()).unwrap();

    const ITEMS: u64 = 200_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            common::spawn_at(
                "producer",
                &path,
                &[
                    common::signal_name(SignalKind::Socket).into(),
                    ITEMS.to_string(),
                ],
            )
        })
        .collect();
    let p = path.clone();
    let c = config.clone();
    let wrong = std::thread::spawn(move || {
        handshake::connect_producer::<[u32; 2]>(&p, &c)
            .map(|_| ())
            .unwrap_err()
    });

    // Next expected item per token; `None` once closed.
    let mut next: HashMap<Token, Option<u64>> = HashMap::new();
    let mut refused = Vec::new();
    while next.len() < 2 || next.values().any(Option::is_some) || refused.is_empty() {
        driver
            .run_once(Some(Duration::from_secs(1)), |ev| match ev {
                DriverEvent::Connected { token, .. } => {
                    assert!(next.insert(token, Some(0)).is_none(), "token reused");
                }
                DriverEvent::Items { token, items } => {
                    let n = next.get_mut(&token).unwrap().as_mut().unwrap();
                    for &x in items {
                        assert_eq!(x, *n, "items in order");
                        *n += 1;
                    }
                }
                DriverEvent::Closed { token, .. } => {
                    let n = next.get_mut(&token).unwrap().take();
                    assert_eq!(n, Some(ITEMS), "closed after every item");
                }
                DriverEvent::Refused(e) => refused.push(e),
                DriverEvent::Throttled { token, .. } => panic!("{token:?} throttled"),
                DriverEvent::Failed { token, error } => panic!("{token:?}: {error}"),
                DriverEvent::Other(e) => panic!("foreign event {e:?}"),
            })
            .unwrap();
    }
    assert_eq!(next.len(), 2);
    assert!(driver.is_empty());
    assert_eq!(refused.len(), 1);
    assert!(
        matches!(&refused[0], Error::Shmring(shmring::Error::TypeMismatch { ours, theirs, .. })
            if ours.name == "u64-seq" && theirs.size == 8 && theirs.align == 4),
        "{}",
        refused[0]
    );
    let e = wrong.join().unwrap();
    assert!(
        matches!(&e, shmring::Error::TypeMismatch { ours, theirs, .. }
            if ours.align == 4 && theirs.align == 8),
        "{e}"
    );
    for c in children {
        common::wait_ok(c, "producer");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn added_consumers_are_drained_without_an_event() {
    let mut driver = ConsumerDriver::<u64>::new().unwrap();
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(16)).unwrap();
    // Items queued before the consumer joins the loop: the producer had no
    // sleep to wake, so only the driver's first drain finds them.
    for i in 0..10 {
        tx.try_push(i).unwrap();
    }
    let token = driver.add(rx).unwrap();
    let mut got = Vec::new();
    // No timeout: a missed first drain would block here for good.
    driver
        .run_once(None, |ev| match ev {
            DriverEvent::Items { token: t, items } => {
                assert_eq!(t, token);
                got.extend_from_slice(items);
            }
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    drop(tx);
    let mut closed = false;
    while !closed {
        driver
            .run_once(None, |ev| match ev {
                DriverEvent::Closed { token: t, .. } => {
                    assert_eq!(t, token);
                    closed = true;
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
    }
    assert!(driver.is_empty());
}

#[test]
fn a_flooding_producer_is_reported_throttled_once_and_still_delivered() {
    use std::os::fd::{AsFd, AsRawFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let _serial = common::serial();
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(16).signal(SignalKind::EventFd)).unwrap();
    let wake = rx.as_fd().try_clone_to_owned().unwrap();
    let mut driver = ConsumerDriver::<u64>::new().unwrap();
    let token = driver.add(rx).unwrap();
    // The first drain arms the sleep.
    driver.run_once(Some(Duration::ZERO), |_| {}).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let one = 1u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: writes 8 bytes from a live local to an eventfd we own.
                unsafe { libc::write(wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        })
    };
    let mut throttled = 0;
    while throttled == 0 {
        driver
            .run_once(Some(Duration::from_secs(1)), |ev| match ev {
                DriverEvent::Throttled { token: t, .. } => {
                    assert_eq!(t, token);
                    throttled += 1;
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(driver.get(token).unwrap().wake_stats().throttles > 0);
    tx.try_push(42).unwrap();
    drop(tx);
    let (mut got, mut closed) = (Vec::new(), false);
    while !closed {
        driver
            .run_once(Some(Duration::from_secs(1)), |ev| match ev {
                DriverEvent::Items { items, .. } => got.extend_from_slice(items),
                DriverEvent::Closed { .. } => closed = true,
                // A pause that ended during the flood's last writes.
                DriverEvent::Throttled { .. } => throttled += 1,
                other => panic!("{other:?}"),
            })
            .unwrap();
    }
    assert_eq!(got, [42]);
}

/// Two producers on one driver, one of them never idle: with a budget of 8
/// items per drain its consumer always has items left (`Ready`), so the
/// driver must come back to it without an event, and still serve the other
/// to its end. The busy producer's `push_blocking` fails if the driver ever
/// stops draining it for 5 s.
#[test]
fn a_busy_producer_and_a_finite_one_are_both_served() {
    use shmring_mio::MioConsumer;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const FINITE: u64 = 20_000;
    let mut driver = ConsumerDriver::<u64>::new().unwrap();
    let (mut busy_tx, busy_rx) = channel::pair::<u64>(&Config::new(1024)).unwrap();
    let (mut finite_tx, finite_rx) = channel::pair::<u64>(&Config::new(64)).unwrap();
    let mut busy_rx = MioConsumer::new(busy_rx);
    busy_rx.set_budget(8);
    let busy = driver.add_source(busy_rx).unwrap();
    let finite = driver.add(finite_rx).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let busy_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || -> shmring::Result<u64> {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                busy_tx.push_blocking(i, Some(Duration::from_secs(5)))?;
                i += 1;
            }
            Ok(i)
        })
    };
    let finite_thread = std::thread::spawn(move || -> shmring::Result<()> {
        for i in 0..FINITE {
            finite_tx.push_blocking(i, Some(Duration::from_secs(5)))?;
        }
        Ok(())
    });

    // Next expected item per token, and which tokens closed.
    let mut next: HashMap<Token, u64> = HashMap::from([(busy, 0), (finite, 0)]);
    let mut closed: Vec<Token> = Vec::new();
    let mut serve = |driver: &mut ConsumerDriver<u64>, closed: &mut Vec<Token>| {
        driver
            .run_once(Some(Duration::from_secs(1)), |ev| match ev {
                DriverEvent::Items { token, items } => {
                    let n = next.get_mut(&token).unwrap();
                    for &x in items {
                        assert_eq!(x, *n, "{token:?}: items in order");
                        *n += 1;
                    }
                }
                DriverEvent::Closed { token, .. } => closed.push(token),
                other => panic!("{other:?}"),
            })
            .unwrap();
    };
    while closed.is_empty() {
        serve(&mut driver, &mut closed);
    }
    // The finite producer ended while the busy one still pushes.
    assert_eq!(closed, [finite]);
    finite_thread.join().unwrap().unwrap();
    // Keep serving while the busy producer stops: joining it first would
    // leave it blocked on a full ring.
    stop.store(true, Ordering::Relaxed);
    while closed.len() < 2 {
        serve(&mut driver, &mut closed);
    }
    let pushed = busy_thread.join().unwrap().expect("busy producer served");
    assert_eq!(closed, [finite, busy]);
    assert_eq!(next[&finite], FINITE);
    assert_eq!(next[&busy], pushed);
    assert!(driver.is_empty());
}
