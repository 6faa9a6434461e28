//! Loom model of the ring's indices and sleep/wake protocol: the real `Writer`
//! and `Reader` code, with loom atomics, two threads, and a wake-up signal
//! modelled by a loom mutex + condvar. A lost wake-up leaves a thread waiting
//! forever, which loom reports as a deadlock; a torn or misordered index shows as
//! a wrong item.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p shmring --test loom --release`
//! (`make test` bounds `LOOM_MAX_PREEMPTIONS=3`: under a second; unbounded takes
//! tens of minutes). Checked that it catches a lost wake-up: with the SeqCst
//! fence in `Writer::publish` removed, every case fails with a loom deadlock.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::{Condvar, Mutex};
use shmring::ring::model::ModelRing;
use shmring::ring::Notify;
use shmring::Error;

/// A binary semaphore: what an eventfd is to the protocol.
struct Sem {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Sem {
    fn new() -> Arc<Self> {
        Arc::new(Sem {
            set: Mutex::new(false),
            cv: Condvar::new(),
        })
    }
    fn wait(&self) {
        let mut g = self.set.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
        *g = false;
    }
}

impl Notify for Sem {
    fn notify(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_one();
    }
}

// SAFETY-free: loom's Mutex/Condvar are Send + Sync.

fn run(capacity: usize, items: u64) {
    loom::model(move || {
        let ring = ModelRing::new(capacity);
        let (mut w, mut r) = ring.ends();
        let data = Sem::new();
        let space = Sem::new();
        w.set_notify(Some(data.clone()));
        r.set_notify(Some(space.clone()));

        let producer = loom::thread::spawn(move || {
            for i in 0..items {
                loop {
                    match w.push(i) {
                        Ok(()) => break,
                        Err(Error::Full) => {
                            if w.prepare_sleep().unwrap() {
                                space.wait();
                            }
                            w.cancel_sleep();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });

        for i in 0..items {
            loop {
                match r.pop() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        break;
                    }
                    Err(Error::Empty) => {
                        if r.prepare_sleep().unwrap() {
                            data.wait();
                        }
                        r.cancel_sleep();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        producer.join().unwrap();
    });
}

/// Consumer sleeps on empty, producer must wake it: 2 items through 1 slot also
/// makes the producer sleep on full.
#[test]
fn no_lost_wakeup_capacity_1() {
    run(1, 2);
}

/// Wrap-around with both sides sleeping.
#[test]
fn no_lost_wakeup_capacity_2() {
    run(2, 3);
}

/// One item: the consumer may sleep before it arrives.
#[test]
fn no_lost_wakeup_one_item() {
    run(4, 1);
}

#[test]
fn no_lost_wakeup_two_items_big_ring() {
    run(4, 2);
}
