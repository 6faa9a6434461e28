//! Loom models of the ring and of the frame arena's slot states.
//!
//! Ring: the real `Writer` and `Reader` code, with loom atomics, two threads,
//! and a wake-up signal modelled by a loom mutex + condvar. A lost wake-up
//! leaves a thread waiting forever, which loom reports as a deadlock; a torn or
//! misordered index shows as a wrong item. Every copy into or out of a slot is
//! announced to a loom-tracked shadow cell (`shmring::ring::model`), so a slot
//! read or rewritten without the index protocol ordering it after the other
//! side's access fails as a loom causality violation: single items
//! (`push`/`pop`) and chunks (`write_chunk`/`commit`, `read_chunk`/`release`,
//! partial, wrapping, through every copying method).
//!
//! Arena: `Arena::try_lease`, `SlotLease` drop and the holder counts a
//! `FrameSender` keeps with `mark_sent`/`mark_returned` (through `#[cfg(loom)]`
//! entry points), on a real memfd arena with one loom-tracked cell standing for
//! each slot's bytes.
//!
//! Run with: `make loom`, i.e. `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom"
//! CARGO_TARGET_DIR=target/loom cargo test -p shmring --test loom --release`
//! (3-8 s of models on 2 busy cores, 45 s with a clean release build;
//! unbounded preemptions take tens of minutes). Checked that each model fails for its reason, with
//! one bug planted at a time in a scratch copy:
//! - without the SeqCst fence in `Wake::publish` (`ring/wake.rs`, which
//!   `Writer::publish` and `Reader::retire` both go through), every ring
//!   model (wake-up and chunk) fails with a loom deadlock (a lost wake-up;
//!   rechecked after the ring was split into modules);
//! - `Relaxed` for `Release` on the write index (the store in
//!   `Wake::publish`, for the writer): every ring model fails with a
//!   causality violation on a slot (without the slot shadows, all of them
//!   passed); the same on the read index (that store, for the reader): the
//!   models where the producer reuses a slot fail so (both checked before
//!   the split, when the writer and the reader each had their own store);
//! - `ReadChunk::release` freeing the whole chunk instead of `k`, or
//!   `WriteChunk::commit` publishing it all (the poisoned slots): every chunk
//!   model fails on the items it checks;
//! - `Shared::runs` restarting the wrapped part at slot 1 instead of 0: the
//!   chunk models with multi-slot copies fail (`set`/`get` copy one slot at a
//!   time and do not wrap a run); `write` or `read` ignoring the offset: the
//!   `write`/`read` and `set`/`get` models fail;
//! - arena: `Relaxed` in `mark_returned` fails the fan-out model (the re-lease
//!   writes while a consumer reads); `Relaxed` for `Acquire` in `try_lease`
//!   fails both arena models; `Relaxed` in the `SlotLease` drop fails the
//!   concurrent-leases model (a re-lease on another thread races the old
//!   holder's write); the lease drop or `mark_returned` as a load then a
//!   store (a lost update) leaks the lease bit or a holder in the fan-out
//!   model; `try_lease` as a load then a store gives one slot to two leasers.
//!   The old two-step `mark_sent` (check the lease bit, then add a holder)
//!   passes: while the caller's lease lives, as `send_frame` requires, no
//!   other thread can drop and retake it between the two steps; with a lease
//!   dropped and retaken during the send, the one-step `mark_sent` counts the
//!   holder on the new lease and fails just the same (tried in the scratch
//!   copy).
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

// ---------------------------------------------------------------------------
// Chunks: write_chunk/commit and read_chunk/release, partial and wrapping.
// ---------------------------------------------------------------------------

/// What the producer writes into the slots of a chunk it does not commit:
/// the consumer must never see it.
const POISON: u64 = u64::MAX;

/// How the producer fills a chunk.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// `write`: the whole chunk with [`POISON`] at offset 0, then the values
    /// again in two calls, at offset 0 and at offset 1.
    Write,
    /// `set`, slot by slot.
    Set,
    /// `fill_from_iter`, which must take the whole chunk.
    Iter,
}

/// How the consumer copies a chunk out.
#[derive(Clone, Copy, Debug)]
enum Take {
    /// `read` of the whole chunk, and again in two calls, at offsets 0 and 1.
    Read,
    /// `get`, item by item.
    Get,
    /// `iter`.
    Iter,
}

/// Producer: in step `s`, takes a chunk of up to `max` slots and fills all of
/// it with `fill`: the next items go into the first `k` slots and
/// [`POISON`] into the rest, then it commits `k`: `partial` items on even
/// steps (a partial commit when the chunk is bigger), all it has on odd ones.
/// With `partial` items committed first, the next chunk starts `partial`
/// slots into the ring, so a chunk longer than `capacity - partial` wraps
/// around the end.
fn produce(
    w: &mut shmring::ring::Writer<u64>,
    space: &Sem,
    items: u64,
    max: usize,
    partial: usize,
    fill: Fill,
) {
    let mut next = 0;
    let mut step = 0usize;
    while next < items {
        let mut chunk = w.write_chunk(max).unwrap();
        let n = chunk.len();
        if n == 0 {
            if w.prepare_sleep().unwrap() {
                space.wait();
            }
            w.cancel_sleep();
            continue;
        }
        let left = (items - next) as usize;
        let k = if step % 2 == 0 { partial } else { n }.min(n).min(left);
        let vals: Vec<u64> = (0..n)
            .map(|j| if j < k { next + j as u64 } else { POISON })
            .collect();
        match fill {
            Fill::Write => {
                chunk.write(0, &vec![POISON; n]);
                chunk.write(0, &vals[..1]);
                chunk.write(1, &vals[1..]);
            }
            Fill::Set => {
                for (j, &v) in vals.iter().enumerate() {
                    chunk.set(j, v);
                }
            }
            Fill::Iter => assert_eq!(chunk.fill_from_iter(vals.iter().copied()), n),
        }
        chunk.commit(k);
        next += k as u64;
        step += 1;
    }
}

/// Consumer: in step `t`, takes a chunk of up to `max` items and copies all of
/// them out with `take`; every item must be the next expected one (never
/// [`POISON`], never out of order, the same when read again after a partial
/// release). Releases `partial` items on even steps, all on odd ones.
fn consume(
    r: &mut shmring::ring::Reader<u64>,
    data: &Sem,
    items: u64,
    max: usize,
    partial: usize,
    take: Take,
) {
    let mut expected = 0;
    let mut step = 0usize;
    while expected < items {
        let chunk = r.read_chunk(max).unwrap();
        let n = chunk.len();
        if n == 0 {
            if r.prepare_sleep().unwrap() {
                data.wait();
            }
            r.cancel_sleep();
            continue;
        }
        let want: Vec<u64> = (expected..expected + n as u64).collect();
        match take {
            Take::Read => {
                let mut whole = vec![0; n];
                chunk.read(0, &mut whole);
                assert_eq!(whole, want, "chunk of {n} at item {expected}");
                let mut split = vec![0; n];
                chunk.read(0, &mut split[..1]);
                chunk.read(1, &mut split[1..]);
                assert_eq!(split, want, "chunk of {n} at item {expected}, split");
            }
            Take::Get => {
                let got: Vec<u64> = (0..n).map(|j| chunk.get(j)).collect();
                assert_eq!(got, want, "chunk of {n} at item {expected}");
            }
            Take::Iter => {
                let got: Vec<u64> = chunk.iter().collect();
                assert_eq!(got, want, "chunk of {n} at item {expected}");
            }
        }
        let k = if step % 2 == 0 { partial.min(n) } else { n };
        chunk.release(k);
        expected += k as u64;
        step += 1;
    }
}

/// `items` through a ring of `capacity` in chunks of up to `max` slots, with
/// the producer committing and the consumer releasing `partial` items every
/// other chunk; both sides sleep when the ring is full or empty.
fn run_chunks(capacity: usize, items: u64, max: usize, partial: usize, fill: Fill, take: Take) {
    loom::model(move || {
        let ring = ModelRing::new(capacity);
        let (mut w, mut r) = ring.ends();
        let data = Sem::new();
        let space = Sem::new();
        w.set_notify(Some(data.clone()));
        r.set_notify(Some(space.clone()));
        let producer =
            loom::thread::spawn(move || produce(&mut w, &space, items, max, partial, fill));
        consume(&mut r, &data, items, max, partial, take);
        producer.join().unwrap();
    });
}

/// Ring of two: one item committed out of a chunk of two (the other slot
/// poisoned), then a chunk of two from the last slot, which wraps; the same
/// for releases. `write`/`read` at offsets 0 and 1 and whole.
#[test]
fn chunks_write_read_partial_and_wrapping_capacity_2() {
    run_chunks(2, 3, 2, 1, Fill::Write, Take::Read);
}

/// As above with `set`/`get`, one slot at a time.
#[test]
fn chunks_set_get_partial_and_wrapping_capacity_2() {
    run_chunks(2, 3, 2, 1, Fill::Set, Take::Get);
}

/// As above with `fill_from_iter`/`iter`.
#[test]
fn chunks_fill_iter_partial_and_wrapping_capacity_2() {
    run_chunks(2, 3, 2, 1, Fill::Iter, Take::Iter);
}

/// Ring of four, chunks of up to three: two items committed out of three (one
/// poisoned slot, rewritten by the next chunk), then a chunk of three from
/// slot 2, which wraps; `write(1, ..)` and `read(1, ..)` then cross the end.
#[test]
fn chunks_write_read_partial_and_wrapping_capacity_4() {
    run_chunks(4, 5, 3, 2, Fill::Write, Take::Read);
}

/// As above with `fill_from_iter`/`iter`.
#[test]
fn chunks_fill_iter_partial_and_wrapping_capacity_4() {
    run_chunks(4, 5, 3, 2, Fill::Iter, Take::Iter);
}

// ---------------------------------------------------------------------------
// Arena: leases and holder counts.
// ---------------------------------------------------------------------------

mod arena {
    use std::sync::Arc;

    use loom::cell::UnsafeCell;
    use shmring::frames::{Arena, FrameConfig};

    /// One loom-tracked cell per slot, standing for the slot's bytes: a lease
    /// holder writes its slot's cell, a consumer reads it.
    struct Bytes(Vec<UnsafeCell<u64>>);

    // SAFETY: every access goes through loom's `with`/`with_mut`, which fail
    // the model on any access from two threads not ordered by happens-before.
    unsafe impl Sync for Bytes {}

    impl std::ops::Deref for Bytes {
        type Target = [UnsafeCell<u64>];
        fn deref(&self) -> &Self::Target {
            &self.0
        }
    }

    /// An arena of `slots` slots and the cells standing for their bytes.
    fn arena(slots: u32) -> (Arena, Arc<Bytes>) {
        let arena = Arena::new(&FrameConfig::new(slots, 64)).unwrap();
        let bytes = (0..slots).map(|_| UnsafeCell::new(0)).collect();
        (arena, Arc::new(Bytes(bytes)))
    }

    /// Fan-out: a frame in the only frame slot is sent to consumers A and B.
    /// A's return races B's send; then the lease holder drops its lease on
    /// another thread and at once tries to lease again (a buffer pool
    /// recycling), racing A's and B's returns. Whatever the interleaving, the
    /// slot is leased again only when neither consumer holds it (the rewrite
    /// is ordered after both consumers' reads), the count never underflows
    /// (each return finds a holder), and at the end nothing leaks: no holder,
    /// no lease bit, and the slot can be leased again.
    #[test]
    fn fan_out_returns_race_a_re_lease() {
        loom::model(|| {
            let (arena, bytes) = arena(2);
            let lease = arena
                .try_lease()
                .expect("a new arena has a free frame slot");
            let idx = lease.index();
            assert_eq!(idx, 0, "one frame slot");
            // SAFETY: the lease makes this thread the slot's only writer
            // (loom checks it).
            bytes[0].with_mut(|p| unsafe { *p = 1 });

            let consumer = |arena: Arena, bytes: Arc<Bytes>| {
                move || {
                    // SAFETY: the slot is in flight to this consumer: nobody
                    // writes it until it is returned (loom checks it).
                    let frame = bytes[0].with(|p| unsafe { *p });
                    assert_eq!(frame, 1, "the frame that was sent");
                    let before = arena.holders(0);
                    assert!(before >= 1, "returning a slot nobody holds");
                    arena.model_mark_returned(0);
                }
            };

            arena.model_mark_sent(idx).expect("sent to A while leased");
            let a = loom::thread::spawn(consumer(arena.clone(), bytes.clone()));
            arena.model_mark_sent(idx).expect("sent to B while leased");
            let b = loom::thread::spawn(consumer(arena.clone(), bytes.clone()));

            let (arena2, bytes2) = (arena.clone(), bytes.clone());
            let pool = loom::thread::spawn(move || {
                drop(lease);
                if let Some(again) = arena2.try_lease() {
                    assert_eq!(again.index(), 0);
                    // SAFETY: as above; loom fails the model if this write is
                    // not ordered after A's and B's reads. (Before any other
                    // load of the state: an `Acquire` load here would order
                    // it even if `try_lease` did not.)
                    bytes2[0].with_mut(|p| unsafe { *p = 2 });
                    assert_eq!(arena2.holders(0), 0, "leased while a consumer holds it");
                }
            });

            a.join().unwrap();
            b.join().unwrap();
            pool.join().unwrap();
            assert_eq!(arena.model_state(0), 0, "holder count or lease bit leaked");
            assert_eq!(arena.in_flight(), 0);
            let last = arena.try_lease().expect("the slot is free at the end");
            assert_eq!(last.index(), 0);
        });
    }

    /// Two threads lease at once from two frame slots while a consumer returns
    /// the one it holds, each twice in a row (lease, write, drop): no slot is
    /// ever leased twice at once, a lease never goes to a held slot, a slot
    /// leased again after another thread dropped it is written only after
    /// that thread's write (the drop releases, the lease acquires), and every
    /// slot is free at the end.
    #[test]
    fn concurrent_leases_are_exclusive() {
        loom::model(|| {
            let (arena, bytes) = arena(3);
            // Slot 0 in flight to a consumer, its lease dropped.
            let first = arena.try_lease().expect("free slot");
            assert_eq!(first.index(), 0);
            arena.model_mark_sent(0).expect("leased");
            drop(first);
            assert_eq!(arena.model_state(0), 1);

            let leaser = |arena: Arena, bytes: Arc<Bytes>, tag: u64| {
                move || {
                    for round in 0..2 {
                        let Some(lease) = arena.try_lease() else {
                            continue;
                        };
                        let i = lease.index() as usize;
                        // SAFETY: the lease makes this thread the slot's only
                        // writer (loom checks it; written before any other
                        // load of the state, which could order it).
                        bytes[i].with_mut(|p| unsafe { *p = tag + round });
                        // SAFETY: as above.
                        assert_eq!(bytes[i].with(|p| unsafe { *p }), tag + round);
                        assert_eq!(arena.holders(i as u32), 0, "leased while held");
                        drop(lease);
                    }
                }
            };
            let x = loom::thread::spawn(leaser(arena.clone(), bytes.clone(), 10));
            let y = loom::thread::spawn(leaser(arena.clone(), bytes.clone(), 20));
            arena.model_mark_returned(0);
            x.join().unwrap();
            y.join().unwrap();
            for i in 0..2 {
                assert_eq!(arena.model_state(i), 0, "slot {i} leaked");
            }
        });
    }
}
