//! The last seconds of a drone's H.264 access units, keyframe-aligned
//! (pure: fed with units and their arrival times).
//!
//! The ring always starts at a keyframe and keeps at least `keep_ms` of
//! history behind the newest unit: it drops whole groups of pictures from
//! the front, never part of one, so any window cut from it decodes.

use std::collections::VecDeque;
use std::sync::Arc;

/// One H.264 access unit (a whole picture, Annex B byte stream, SPS/PPS
/// in front of each keyframe).
#[derive(Debug, Clone)]
pub struct Au {
    pub data: bytes::Bytes,
    /// An IDR picture a decoder can start from.
    pub keyframe: bool,
    /// When the station received it (Unix ms).
    pub recv_unix_ms: i64,
}

#[derive(Debug)]
pub struct Ring {
    keep_ms: i64,
    max_bytes: usize,
    aus: VecDeque<Arc<Au>>,
    bytes: usize,
}

impl Ring {
    pub fn new(keep_ms: i64, max_bytes: usize) -> Self {
        Self {
            keep_ms,
            max_bytes,
            aus: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.aus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aus.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Add a unit. Units before the first keyframe are not kept (nothing
    /// could decode them).
    pub fn push(&mut self, au: Arc<Au>) {
        if self.aus.is_empty() && !au.keyframe {
            return;
        }
        self.bytes += au.data.len();
        self.aus.push_back(au);
        self.trim();
    }

    /// Drop leading groups of pictures while the next group still starts
    /// at least `keep_ms` before the newest unit (or while over the byte
    /// cap and another group exists).
    fn trim(&mut self) {
        let newest = match self.aus.back() {
            Some(a) => a.recv_unix_ms,
            None => return,
        };
        loop {
            // The second keyframe: where the ring would start next.
            let Some(next) = self
                .aus
                .iter()
                .skip(1)
                .position(|a| a.keyframe)
                .map(|i| i + 1)
            else {
                return;
            };
            let old_enough = self.aus[next].recv_unix_ms <= newest - self.keep_ms;
            let too_big = self.bytes > self.max_bytes;
            if !(old_enough || too_big) {
                return;
            }
            for _ in 0..next {
                let a = self.aus.pop_front().expect("counted");
                self.bytes -= a.data.len();
            }
        }
    }

    /// The units from the last keyframe at or before `start_ms` (the
    /// first keyframe if none is that old) up to `end_ms` inclusive.
    pub fn window(&self, start_ms: i64, end_ms: i64) -> Vec<Arc<Au>> {
        let first = self
            .aus
            .iter()
            .enumerate()
            .filter(|(_, a)| a.keyframe && a.recv_unix_ms <= start_ms)
            .map(|(i, _)| i)
            .next_back()
            .or_else(|| self.aus.iter().position(|a| a.keyframe));
        let Some(first) = first else { return vec![] };
        self.aus
            .iter()
            .skip(first)
            .take_while(|a| a.recv_unix_ms <= end_ms)
            .cloned()
            .collect()
    }

    /// Arrival time of the oldest unit kept.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.aus.front().map(|a| a.recv_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(t: i64, key: bool) -> Arc<Au> {
        Arc::new(Au {
            data: bytes::Bytes::from(vec![0u8; 100]),
            keyframe: key,
            recv_unix_ms: t,
        })
    }

    /// 10 fps, a keyframe every 10 frames, from t = 0.
    fn fill(r: &mut Ring, frames: i64) {
        for i in 0..frames {
            r.push(au(i * 100, i % 10 == 0));
        }
    }

    #[test]
    fn keeps_at_least_the_window_from_a_keyframe() {
        let mut r = Ring::new(3_000, usize::MAX);
        fill(&mut r, 100); // 0 .. 9.9 s
        let oldest = r.oldest_ms().unwrap();
        // Newest 9900: keep >= 3 s, so the ring starts at the keyframe at
        // or before 6900, i.e. 6000.
        assert_eq!(oldest, 6_000);
        assert!(r.window(0, i64::MAX)[0].keyframe);
        assert_eq!(r.bytes(), r.len() * 100);
    }

    #[test]
    fn leading_non_keyframes_are_not_kept() {
        let mut r = Ring::new(3_000, usize::MAX);
        r.push(au(0, false));
        r.push(au(100, false));
        assert!(r.is_empty());
        r.push(au(200, true));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_window_starts_at_the_keyframe_before_it() {
        let mut r = Ring::new(60_000, usize::MAX);
        fill(&mut r, 100);
        let w = r.window(2_500, 5_000);
        assert_eq!(w.first().unwrap().recv_unix_ms, 2_000);
        assert!(w.first().unwrap().keyframe);
        assert_eq!(w.last().unwrap().recv_unix_ms, 5_000);
        // Before anything kept: from the first keyframe.
        assert_eq!(r.window(-5_000, 300).len(), 4);
        assert!(Ring::new(1, 1).window(0, 10).is_empty());
    }

    #[test]
    fn the_byte_cap_drops_whole_groups() {
        let mut r = Ring::new(60_000, 2_500);
        fill(&mut r, 100);
        // 25 units allowed; groups are 10 units: keeps 2 groups + part.
        assert!(r.bytes() <= 2_500 + 1_000, "{}", r.bytes());
        assert!(r.window(0, i64::MAX)[0].keyframe);
    }
}
