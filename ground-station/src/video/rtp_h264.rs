//! Repairing one common sender mistake in H.264 over RTP, before the
//! depayloader sees it (pure: packets in, verdicts out).
//!
//! Some senders repeat SPS/PPS before every IDR *slice* — GStreamer's own
//! `rtph264pay config-interval=-1` does, and x264's zerolatency tune cuts
//! each frame into several slices. A parameter set after a slice starts a
//! new access unit (H.264 § 7.4.1.2.3), so `rtph264depay` and `h264parse`
//! split such a key frame in two; the second half has no time of its own,
//! and a browser decoding it over WebRTC shows torn pictures. [`Repair`]
//! drops those repeats (a single-NAL or STAP-A packet holding only
//! SPS/PPS/AUD after a slice of the same RTP timestamp) and renumbers the
//! packets after them, so the depayloader sees an unbroken sequence. The
//! parameter sets before the first slice, which every decoder needs, stay.

/// What to do with one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Keep it with this sequence number.
    Renumber(u16),
    Drop,
}

/// The repairer's memory of the stream.
#[derive(Debug, Default)]
pub struct Repair {
    ts: Option<u32>,
    slice_seen: bool,
    /// Packets dropped so far (the renumbering offset).
    dropped: u16,
}

/// NAL unit types of a packet's payload, as far as they matter here:
/// (has a slice, has only SPS/PPS/AUD).
fn kinds(payload: &[u8]) -> Option<(bool, bool)> {
    let t = payload.first()? & 0x1f;
    let is_slice = |t: u8| (1..=5).contains(&t);
    let is_param = |t: u8| matches!(t, 7..=9);
    match t {
        // FU-A / FU-B: the fragmented unit's type is in the FU header.
        28 | 29 => {
            let inner = payload.get(1)? & 0x1f;
            Some((is_slice(inner), false))
        }
        // STAP-A: 16-bit size, then the unit, repeated.
        24 => {
            let (mut i, mut slice, mut only_params, mut any) = (1, false, true, false);
            while i + 2 < payload.len() {
                let n = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                let t = payload.get(i + 2)? & 0x1f;
                slice |= is_slice(t);
                only_params &= is_param(t);
                any = true;
                i += 2 + n;
            }
            Some((slice, any && only_params))
        }
        t => Some((is_slice(t), is_param(t))),
    }
}

impl Repair {
    /// Look at one RTP packet (the whole packet, header first).
    pub fn packet(&mut self, rtp: &[u8]) -> Verdict {
        if rtp.len() < 12 || rtp[0] >> 6 != 2 {
            return self.renumbered(rtp);
        }
        let csrc = (rtp[0] & 0x0f) as usize;
        let mut off = 12 + 4 * csrc;
        if rtp[0] & 0x10 != 0 {
            let Some(ext) = rtp.get(off + 2..off + 4) else {
                return self.renumbered(rtp);
            };
            off += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
        }
        let mut end = rtp.len();
        if rtp[0] & 0x20 != 0 {
            end = end.saturating_sub(*rtp.last().unwrap_or(&0) as usize);
        }
        let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
        if self.ts != Some(ts) {
            self.ts = Some(ts);
            self.slice_seen = false;
        }
        let Some((slice, only_params)) = rtp.get(off..end).and_then(kinds) else {
            return self.renumbered(rtp);
        };
        if only_params && self.slice_seen {
            self.dropped = self.dropped.wrapping_add(1);
            return Verdict::Drop;
        }
        self.slice_seen |= slice;
        self.renumbered(rtp)
    }

    fn renumbered(&self, rtp: &[u8]) -> Verdict {
        if self.dropped == 0 || rtp.len() < 4 {
            return Verdict::Keep;
        }
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        Verdict::Renumber(seq.wrapping_sub(self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }
    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const FU_IDR_START: &[u8] = &[0x7c, 0x85, 1, 2];
    const FU_IDR_END: &[u8] = &[0x7c, 0x45, 3, 4];
    const IDR: &[u8] = &[0x65, 0x88, 5];
    const P: &[u8] = &[0x41, 0x9a, 6];

    #[test]
    fn parameter_sets_between_slices_are_dropped_and_the_rest_renumbered() {
        let mut r = Repair::default();
        let out: Vec<Verdict> = [
            rtp(10, 900, SPS),
            rtp(11, 900, PPS),
            rtp(12, 900, FU_IDR_START),
            rtp(13, 900, FU_IDR_END),
            rtp(14, 900, SPS),
            rtp(15, 900, PPS),
            rtp(16, 900, IDR),
            rtp(17, 1800, P),
            rtp(18, 2700, SPS),
        ]
        .iter()
        .map(|p| r.packet(p))
        .collect();
        use Verdict::*;
        assert_eq!(
            out,
            [
                Keep,
                Keep,
                Keep,
                Keep,
                Drop,
                Drop,
                Renumber(14),
                Renumber(15),
                // A new picture's leading SPS stays.
                Renumber(16)
            ]
        );
    }

    #[test]
    fn a_well_formed_stream_is_left_alone() {
        let mut r = Repair::default();
        // STAP-A with SPS+PPS, then a two-slice IDR, then P-frames.
        let mut stap = vec![0x78];
        for n in [SPS, PPS] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        for (i, p) in [
            rtp(65534, 0, &stap),
            rtp(65535, 0, IDR),
            rtp(0, 0, IDR),
            rtp(1, 3000, P),
            rtp(2, 3000, P),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(r.packet(p), Verdict::Keep, "packet {i}");
        }
        // Not RTP, or too short: untouched.
        assert_eq!(r.packet(&[1, 2, 3]), Verdict::Keep);
    }

    #[test]
    fn a_stap_of_parameter_sets_after_a_slice_is_dropped_and_sequence_wraps() {
        let mut r = Repair::default();
        let mut stap = vec![0x78];
        for n in [SPS, PPS] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        assert_eq!(r.packet(&rtp(65534, 7, IDR)), Verdict::Keep);
        assert_eq!(r.packet(&rtp(65535, 7, &stap)), Verdict::Drop);
        assert_eq!(r.packet(&rtp(0, 7, IDR)), Verdict::Renumber(65535));
    }
}
