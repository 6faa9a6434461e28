//! SECURITY.md, "Flood returns to keep the producer busy": a consumer that
//! floods the return ring with forged returns cannot keep the producer in
//! `reclaim`: each call takes at most one ring's worth, ignores and counts
//! every forged return, and frees nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use shmring::frames::{self, FrameConfig};
use shmring::Error;

#[test]
fn flooded_returns_take_at_most_one_ring_per_reclaim() {
    let (mut tx, rx) = frames::pair(&FrameConfig::new(8, 256)).expect("pair");
    // The ring's worth: forged returns until the return ring is full.
    let mut ring = 0u64;
    loop {
        match rx.return_raw(u32::MAX) {
            Ok(()) => ring += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ring > 0);
    let freed = tx
        .reclaim(|_| panic!("a forged return freed a slot"))
        .expect("reclaim");
    assert_eq!(freed, 0);
    assert_eq!(tx.bad_returns(), ring, "one full ring taken and counted");

    // Now a consumer that refills the ring as fast as it can meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let forged = Arc::new(AtomicU64::new(0));
    let (s, f) = (stop.clone(), forged.clone());
    let flooder = std::thread::spawn(move || {
        let mut slot = 0u32;
        while !s.load(Ordering::Relaxed) {
            if rx.return_raw(slot).is_ok() {
                f.fetch_add(1, Ordering::Relaxed);
            }
            slot = slot.wrapping_add(1);
        }
        rx
    });
    // Until the flooder forged 50 rings' worth (or 30 s: then it never ran).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while forged.load(Ordering::Relaxed) < 50 * ring {
        assert!(
            std::time::Instant::now() < deadline,
            "the flooder forged only {} returns",
            forged.load(Ordering::Relaxed)
        );
        let before = tx.bad_returns();
        let freed = tx
            .reclaim(|_| panic!("a forged return freed a slot"))
            .expect("reclaim");
        assert_eq!(freed, 0);
        let taken = tx.bad_returns() - before;
        assert!(
            taken <= ring,
            "one reclaim took {taken} returns of a {ring}-ring"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let rx = flooder.join().expect("flooder");
    let forged = forged.load(Ordering::Relaxed);
    // What is left in the ring (at most a ring's worth) comes out in one call.
    tx.reclaim(|_| panic!("a forged return freed a slot"))
        .expect("reclaim");
    assert_eq!(
        tx.bad_returns(),
        ring + forged,
        "every forged return counted"
    );
    drop(rx);
}
