//! One writer and one reader per ring in this process: the process-wide
//! table of attached ends, keyed by the region's address (see the
//! [module docs](crate::ring)), and [`End`], which names the two ends.

use std::sync::Mutex;

use super::RingLayout;
use crate::{Error, Result};

/// The two ends of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum End {
    Writer,
    Reader,
}

/// Ends attached in this process: the address of their region, which end,
/// and the layout they attached with.
static CLAIMS: Mutex<Vec<(usize, End, RingLayout)>> = Mutex::new(Vec::new());

/// This process's claim on one end of the ring at one address: while it
/// lives, no other end of that kind attaches there, and the other end only
/// with the same layout (see the module docs).
#[derive(Debug)]
pub(super) struct Claim {
    base: usize,
    end: End,
}

impl Claim {
    pub(super) fn take(base: *mut u8, end: End, layout: &RingLayout) -> Result<Self> {
        let base = base as usize;
        let mut claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        for (b, e, l) in claims.iter() {
            if *b != base {
                continue;
            }
            if *e == end {
                return Err(Error::InvalidArgument(format!(
                    "the ring's {} is already attached in this process",
                    match end {
                        End::Writer => "writer",
                        End::Reader => "reader",
                    }
                )));
            }
            if l != layout {
                // Two geometries over one memory: one end's slots would overlap
                // the other's in ways the indices do not order.
                return Err(Error::InvalidArgument(
                    "the other end of this region is attached in this process with another layout"
                        .into(),
                ));
            }
        }
        claims.push((base, end, *layout));
        Ok(Claim { base, end })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = claims
            .iter()
            .position(|&(b, e, _)| (b, e) == (self.base, self.end))
        {
            claims.swap_remove(i);
        }
    }
}
