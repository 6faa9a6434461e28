//! A `shmringsink` whose consumers (real `gst-launch-1.0 shmringsrc`
//! processes) are SIGKILLed at random moments. Alone in its test binary, so
//! that the fd count it checks is this test's own.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

/// A consumer SIGKILLed at 20 random moments: each time the sink drops it,
/// every slot it held comes back (no slot is held by nobody), the other two
/// keep receiving, and a new consumer is served. The sink process ends with
/// as many fds as it had with three consumers before.
#[test]
fn consumers_killed_at_random_leave_no_slot_or_fd_behind() {
    init();
    let path = sock("fan-kill");
    let (pipeline, sink) = sink_pipeline(&path, "timeout=2000");
    let mut kids = Children::default();
    let mut pids: Vec<u32> = (0..3).map(|_| kids.spawn_src(&path)).collect();
    wait_streaming(&sink, &pids);
    let fds_before = fd_count();
    let mut rng = Lcg(0x5eed);
    for round in 0..20u64 {
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        let victim = pids.remove(rng.below(3) as usize);
        kids.kill(victim);
        wait_until(
            "the dead consumer is dropped",
            Duration::from_secs(3),
            || stat(&sink, "disconnects") == round + 1,
        );
        assert_eq!(stat(&sink, "leaked-slots"), 0, "round {round}");
        assert!(!peers(&sink).contains_key(&victim));
        let (got, _) = rates(&sink, &pids, Duration::from_millis(100));
        assert!(got.iter().all(|&n| n > 0), "round {round}: {got:?}");
        pids.push(kids.spawn_src(&path));
        wait_streaming(&sink, &pids);
    }
    assert_eq!(stat(&sink, "consumers"), 3);
    assert_eq!(fd_count(), fds_before, "fds leaked");
    pipeline.set_state(gst::State::Null).expect("null");
}
