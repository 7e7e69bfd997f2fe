//! MAVLink framing, sans-IO: bytes in, checked frames out; messages in,
//! bytes out.
//!
//! The `mavlink` crate provides the dialect (message structs, payload
//! (de)serialisation, CRC_EXTRA) and its own readers, but those readers skip
//! bad frames silently. A companion link has to *count* what it drops (CRC
//! errors, unknown ids, truncated datagrams, bad signatures) to tell a noisy
//! radio from a broken peer, so framing is done here, with the crate's
//! `calculate_crc` and message `parse`/`ser`.
//!
//! Frames are MAVLink 2 (and MAVLink 1 on input). The non-standard 32-bit
//! system id flag of `mavlink-core` is treated as an unknown incompatibility
//! flag: such frames are dropped, as the MAVLink spec requires.

use mavlink::{calculate_crc, MavHeader, MavlinkVersion, Message};
use serde::Serialize;

use crate::signing::{SignatureError, Signer, Verifier};

/// The dialect tiancha speaks: ArduPilot's `ardupilotmega` (a superset of
/// `common`), with MAVLink 2 extension fields.
pub use mavlink::dialects::ardupilotmega as dialect;
/// A MAVLink message of the dialect.
pub type Msg = dialect::MavMessage;

const STX_V1: u8 = 0xFE;
const STX_V2: u8 = 0xFD;
const V1_HEADER: usize = 5;
const V2_HEADER: usize = 9;
const SIGNATURE_LEN: usize = 13;
const IFLAG_SIGNED: u8 = 0x01;
/// Longest MAVLink 2 frame: STX + header + payload + CRC + signature.
pub const MAX_FRAME_LEN: usize = 1 + V2_HEADER + 255 + 2 + SIGNATURE_LEN;
/// The parser keeps at most this many unparsed bytes (a stream that never
/// resynchronises cannot make it grow without bound).
const MAX_BUFFER: usize = 64 * 1024;

/// MAVLink protocol version of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Version {
    V1,
    V2,
}

/// The MAVLink 2 signature trailer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureTrailer {
    pub link_id: u8,
    /// 10 µs units since 2015-01-01 00:00:00 UTC.
    pub timestamp: u64,
    pub value: [u8; 6],
}

/// A frame whose length and CRC are good, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub version: Version,
    pub seq: u8,
    pub system_id: u8,
    pub component_id: u8,
    pub message_id: u32,
    pub incompat_flags: u8,
    /// The whole frame as received (STX … CRC [… signature]).
    pub bytes: Vec<u8>,
    payload_start: usize,
    payload_len: usize,
}

impl RawFrame {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_start..self.payload_start + self.payload_len]
    }

    /// The signature trailer, if the frame is signed.
    pub fn signature(&self) -> Option<SignatureTrailer> {
        if self.version != Version::V2 || self.incompat_flags & IFLAG_SIGNED == 0 {
            return None;
        }
        let s = &self.bytes[self.bytes.len() - SIGNATURE_LEN..];
        let mut ts = [0u8; 8];
        ts[..6].copy_from_slice(&s[1..7]);
        let mut value = [0u8; 6];
        value.copy_from_slice(&s[7..13]);
        Some(SignatureTrailer {
            link_id: s[0],
            timestamp: u64::from_le_bytes(ts),
            value,
        })
    }

    /// The bytes a signature covers: everything but the 6-byte value.
    pub fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 6]
    }

    /// Decode the payload with the dialect.
    pub fn decode(&self) -> Result<Msg, FrameError> {
        let version = match self.version {
            Version::V1 => MavlinkVersion::V1,
            Version::V2 => MavlinkVersion::V2,
        };
        Msg::parse(version, self.message_id, self.payload()).map_err(|e| FrameError::BadPayload {
            message_id: self.message_id,
            reason: e.to_string(),
        })
    }

    pub fn header(&self) -> MavHeader {
        MavHeader {
            system_id: self.system_id as u32,
            component_id: self.component_id,
            sequence: self.seq,
        }
    }
}

/// Why bytes were dropped. Each is counted in [`LinkStats`]; none is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("CRC mismatch on message id {message_id}")]
    BadCrc { message_id: u32 },
    #[error("unknown message id {message_id} (not in the ardupilotmega dialect)")]
    UnknownMessage { message_id: u32 },
    #[error("unsupported incompatibility flags {flags:#04x}")]
    UnsupportedFlags { flags: u8 },
    #[error("payload of message id {message_id} does not decode: {reason}")]
    BadPayload { message_id: u32, reason: String },
    #[error("datagram ended inside a frame ({bytes} bytes dropped)")]
    Truncated { bytes: usize },
}

/// What a link dropped and why, and how much went through. Cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    pub bytes_rx: u64,
    pub bytes_tx: u64,
    pub frames_rx: u64,
    pub frames_tx: u64,
    /// Bytes skipped while looking for a frame start (noise between frames).
    pub garbage_bytes: u64,
    pub crc_errors: u64,
    pub unknown_messages: u64,
    pub unsupported_flags: u64,
    pub bad_payloads: u64,
    pub truncated: u64,
    /// Gaps in the sender's sequence numbers: frames lost on the way in.
    pub seq_gaps: u64,
    pub unsigned_rejected: u64,
    pub bad_signatures: u64,
    pub stale_signatures: u64,
    /// Frames from a system other than the autopilot we talk to.
    pub foreign_frames: u64,
    /// Frames addressed to another system or component.
    pub not_for_us: u64,
    /// COMMAND_ACKs for commands we never sent (or already finished).
    pub unexpected_acks: u64,
    /// Mission messages that fit no transfer in progress.
    pub unexpected_mission_messages: u64,
}

impl LinkStats {
    /// Everything dropped on input, for a one-number health check.
    pub fn dropped(&self) -> u64 {
        self.crc_errors
            + self.unknown_messages
            + self.unsupported_flags
            + self.bad_payloads
            + self.truncated
            + self.unsigned_rejected
            + self.bad_signatures
            + self.stale_signatures
    }

    fn count(&mut self, e: &FrameError) {
        match e {
            FrameError::BadCrc { .. } => self.crc_errors += 1,
            FrameError::UnknownMessage { .. } => self.unknown_messages += 1,
            FrameError::UnsupportedFlags { .. } => self.unsupported_flags += 1,
            FrameError::BadPayload { .. } => self.bad_payloads += 1,
            FrameError::Truncated { .. } => self.truncated += 1,
        }
    }
}

fn known_message(id: u32) -> bool {
    Msg::default_message_from_id(id).is_some()
}

/// Incremental frame boundary detection and CRC check. Feed it bytes from a
/// stream ([`push`](Self::push)) or whole datagrams
/// ([`push_datagram`](Self::push_datagram)), then drain
/// [`next_frame`](Self::next_frame). Never panics, whatever the input.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    start: usize,
    /// Garbage bytes skipped, not yet reported.
    garbage: u64,
}

impl FrameParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes from a byte stream (serial, TCP).
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && (self.start > self.buf.len() / 2 || self.buf.len() > MAX_BUFFER) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() - self.start > MAX_BUFFER {
            // Only reachable if a caller pushes far more than it drains.
            let excess = self.buf.len() - self.start - MAX_BUFFER;
            self.garbage += excess as u64;
            self.start += excess;
        }
    }

    /// Parse one whole datagram: every frame in it, and a
    /// [`FrameError::Truncated`] if it ends inside a frame (MAVLink frames
    /// never span datagrams). Any stream bytes pending are discarded first.
    pub fn push_datagram(&mut self, data: &[u8]) -> Vec<Result<RawFrame, FrameError>> {
        self.buf.clear();
        self.start = 0;
        self.push(data);
        let mut out = Vec::new();
        while let Some(r) = self.next_frame() {
            out.push(r);
        }
        let rest = self.buf.len() - self.start;
        if rest > 0 {
            let at_marker = matches!(self.buf[self.start], STX_V1 | STX_V2);
            if at_marker {
                out.push(Err(FrameError::Truncated { bytes: rest }));
            } else {
                self.garbage += rest as u64;
            }
        }
        self.buf.clear();
        self.start = 0;
        out
    }

    /// Garbage bytes skipped since the last call.
    pub fn take_garbage(&mut self) -> u64 {
        std::mem::take(&mut self.garbage)
    }

    /// The next complete frame, or an error for a dropped candidate, or
    /// `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<RawFrame, FrameError>> {
        {
            // Seek a start marker.
            let avail = &self.buf[self.start..];
            match avail.iter().position(|&b| b == STX_V1 || b == STX_V2) {
                Some(0) => {}
                Some(n) => {
                    self.garbage += n as u64;
                    self.start += n;
                }
                None => {
                    self.garbage += avail.len() as u64;
                    self.start = self.buf.len();
                    return None;
                }
            }
            let c = &self.buf[self.start..];
            if c.len() < 3 {
                return None;
            }
            let v2 = c[0] == STX_V2;
            let payload_len = c[1] as usize;
            let (header_len, sig_len) = if v2 {
                let iflags = c[2];
                if iflags & !IFLAG_SIGNED != 0 {
                    self.start += 1;
                    return Some(Err(FrameError::UnsupportedFlags { flags: iflags }));
                }
                (
                    V2_HEADER,
                    if iflags & IFLAG_SIGNED != 0 {
                        SIGNATURE_LEN
                    } else {
                        0
                    },
                )
            } else {
                (V1_HEADER, 0)
            };
            let frame_len = 1 + header_len + payload_len + 2 + sig_len;
            if c.len() < frame_len {
                return None;
            }
            let message_id = if v2 {
                u32::from_le_bytes([c[7], c[8], c[9], 0])
            } else {
                c[5] as u32
            };
            if !known_message(message_id) {
                // Cannot check the CRC without CRC_EXTRA: resynchronise on
                // the next byte rather than trust the length of a frame we
                // cannot validate.
                self.start += 1;
                return Some(Err(FrameError::UnknownMessage { message_id }));
            }
            let crc_at = 1 + header_len + payload_len;
            let crc = calculate_crc(&c[1..crc_at], Msg::extra_crc(message_id));
            let got = u16::from_le_bytes([c[crc_at], c[crc_at + 1]]);
            if crc != got {
                self.start += 1;
                return Some(Err(FrameError::BadCrc { message_id }));
            }
            let frame = RawFrame {
                version: if v2 { Version::V2 } else { Version::V1 },
                seq: if v2 { c[4] } else { c[2] },
                system_id: if v2 { c[5] } else { c[3] },
                component_id: if v2 { c[6] } else { c[4] },
                message_id,
                incompat_flags: if v2 { c[2] } else { 0 },
                bytes: c[..frame_len].to_vec(),
                payload_start: 1 + header_len,
                payload_len,
            };
            self.start += frame_len;
            Some(Ok(frame))
        }
    }
}

/// Serialise `msg` as a MAVLink 2 frame, signed when a signer is given.
pub fn encode(
    system_id: u8,
    component_id: u8,
    seq: u8,
    msg: &Msg,
    signer: Option<(&mut Signer, u64)>,
) -> Vec<u8> {
    let mut payload = [0u8; 255];
    let len = msg.ser(MavlinkVersion::V2, &mut payload);
    let id = msg.message_id();
    let mut out = Vec::with_capacity(1 + V2_HEADER + len + 2 + SIGNATURE_LEN);
    let iflags = if signer.is_some() { IFLAG_SIGNED } else { 0 };
    let idb = id.to_le_bytes();
    out.extend_from_slice(&[
        STX_V2,
        len as u8,
        iflags,
        0,
        seq,
        system_id,
        component_id,
        idb[0],
        idb[1],
        idb[2],
    ]);
    out.extend_from_slice(&payload[..len]);
    let crc = calculate_crc(&out[1..], Msg::extra_crc(id));
    out.extend_from_slice(&crc.to_le_bytes());
    if let Some((signer, now_unix_us)) = signer {
        signer.sign(&mut out, now_unix_us);
    }
    out
}

/// Receive-side pipeline for one peer: framing, signature policy, decoding,
/// statistics. Sans-IO: feed bytes, get `(header, message)` pairs.
#[derive(Debug, Default)]
pub struct Decoder {
    parser: FrameParser,
    pub stats: LinkStats,
    verifier: Option<Verifier>,
    last_seq: std::collections::HashMap<(u8, u8), u8>,
}

/// A decoded message with who sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub header: MavHeader,
    pub msg: Msg,
    pub signed: bool,
}

impl Decoder {
    pub fn new(verifier: Option<Verifier>) -> Self {
        Self {
            verifier,
            ..Default::default()
        }
    }

    pub fn set_verifier(&mut self, verifier: Option<Verifier>) {
        self.verifier = verifier;
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Decode a stream chunk; `now_unix_us` is the local clock for the
    /// signature freshness check.
    pub fn push_stream(&mut self, data: &[u8], now_unix_us: u64) -> Vec<Received> {
        self.stats.bytes_rx += data.len() as u64;
        self.parser.push(data);
        let mut out = Vec::new();
        while let Some(r) = self.parser.next_frame() {
            self.accept(r, now_unix_us, &mut out);
        }
        self.stats.garbage_bytes += self.parser.take_garbage();
        out
    }

    /// Decode one datagram.
    pub fn push_datagram(&mut self, data: &[u8], now_unix_us: u64) -> Vec<Received> {
        self.stats.bytes_rx += data.len() as u64;
        let mut out = Vec::new();
        for r in self.parser.push_datagram(data) {
            self.accept(r, now_unix_us, &mut out);
        }
        self.stats.garbage_bytes += self.parser.take_garbage();
        out
    }

    fn accept(
        &mut self,
        r: Result<RawFrame, FrameError>,
        now_unix_us: u64,
        out: &mut Vec<Received>,
    ) {
        let frame = match r {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "dropped MAVLink bytes");
                self.stats.count(&e);
                return;
            }
        };
        if let Some(v) = self.verifier.as_mut() {
            if let Err(e) = v.verify(&frame, now_unix_us) {
                match e {
                    SignatureError::Unsigned => self.stats.unsigned_rejected += 1,
                    SignatureError::BadSignature => self.stats.bad_signatures += 1,
                    SignatureError::Stale => self.stats.stale_signatures += 1,
                }
                tracing::debug!(error = %e, msg_id = frame.message_id, sys = frame.system_id, "rejected frame");
                return;
            }
        }
        let msg = match frame.decode() {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable MAVLink payload");
                self.stats.count(&e);
                return;
            }
        };
        self.stats.frames_rx += 1;
        let key = (frame.system_id, frame.component_id);
        if let Some(last) = self.last_seq.insert(key, frame.seq) {
            let gap = frame.seq.wrapping_sub(last).wrapping_sub(1);
            // A large "gap" is a reorder or duplicate, not a loss.
            if gap < 128 {
                self.stats.seq_gaps += gap as u64;
            }
        }
        out.push(Received {
            header: frame.header(),
            signed: frame.signature().is_some(),
            msg,
        });
    }
}

/// Send-side: sequence numbers, optional signing, statistics.
#[derive(Debug)]
pub struct Encoder {
    pub system_id: u8,
    pub component_id: u8,
    seq: u8,
    signer: Option<Signer>,
    pub frames_tx: u64,
    pub bytes_tx: u64,
}

impl Encoder {
    pub fn new(system_id: u8, component_id: u8, signer: Option<Signer>) -> Self {
        Self {
            system_id,
            component_id,
            seq: 0,
            signer,
            frames_tx: 0,
            bytes_tx: 0,
        }
    }

    pub fn set_signer(&mut self, signer: Option<Signer>) {
        self.signer = signer;
    }

    pub fn signing(&self) -> bool {
        self.signer.is_some()
    }

    pub fn encode(&mut self, msg: &Msg, now_unix_us: u64) -> Vec<u8> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let bytes = encode(
            self.system_id,
            self.component_id,
            seq,
            msg,
            self.signer.as_mut().map(|s| (s, now_unix_us)),
        );
        self.frames_tx += 1;
        self.bytes_tx += bytes.len() as u64;
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::*;

    fn heartbeat() -> Msg {
        Msg::HEARTBEAT(HEARTBEAT_DATA {
            custom_mode: 4,
            mavtype: MavType::MAV_TYPE_QUADROTOR,
            autopilot: MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode: MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
            system_status: MavState::MAV_STATE_STANDBY,
            mavlink_version: 3,
        })
    }

    #[test]
    fn round_trips_through_a_byte_stream_split_anywhere() {
        let a = encode(1, 1, 7, &heartbeat(), None);
        let b = encode(
            1,
            1,
            8,
            &Msg::MISSION_ITEM_REACHED(MISSION_ITEM_REACHED_DATA { seq: 3 }),
            None,
        );
        let mut all = vec![0x55, 0x00];
        all.extend_from_slice(&a);
        all.extend_from_slice(&[0xFD, 0x01]); // a false start
        all.extend_from_slice(&b);
        for split in 0..all.len() {
            let mut d = Decoder::new(None);
            let mut got = d.push_stream(&all[..split], 0);
            got.extend(d.push_stream(&all[split..], 0));
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].msg, heartbeat());
            assert_eq!(got[0].header.sequence, 7);
            assert!(matches!(got[1].msg, Msg::MISSION_ITEM_REACHED(ref r) if r.seq == 3));
            assert_eq!(d.stats.frames_rx, 2);
        }
    }

    #[test]
    fn counts_corruption_and_truncation_without_losing_good_frames() {
        let good = encode(1, 1, 0, &heartbeat(), None);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xFF; // payload byte: CRC now wrong
        let mut d = Decoder::new(None);
        let mut dg = bad.clone();
        dg.extend_from_slice(&good);
        let got = d.push_datagram(&dg, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(d.stats.crc_errors, 1);
        let got = d.push_datagram(&good[..good.len() - 4], 0);
        assert!(got.is_empty());
        assert_eq!(d.stats.truncated, 1);
        // Unknown message id 0xABCDE with a plausible header.
        let mut unk = good.clone();
        unk[7] = 0xDE;
        unk[8] = 0xBC;
        unk[9] = 0x0A;
        let got = d.push_datagram(&unk, 0);
        assert!(got.is_empty());
        assert_eq!(d.stats.unknown_messages, 1);
        let got = d.push_datagram(&good, 0);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn sequence_gaps_are_counted_as_losses() {
        let mut d = Decoder::new(None);
        for seq in [0u8, 1, 2, 5, 6, 255, 0] {
            d.push_datagram(&encode(1, 1, seq, &heartbeat(), None), 0);
        }
        // 2→5 loses 2; 6→255 loses 248 which is > 128, counted as reorder;
        // 255→0 is contiguous.
        assert_eq!(d.stats.seq_gaps, 2);
    }

    #[test]
    fn parses_mavlink1_frames() {
        // HEARTBEAT in MAVLink 1, built by hand.
        let m = heartbeat();
        let mut payload = [0u8; 255];
        let len = m.ser(MavlinkVersion::V1, &mut payload);
        let mut f = vec![STX_V1, len as u8, 9, 42, 1, 0];
        f.extend_from_slice(&payload[..len]);
        let crc = calculate_crc(&f[1..], Msg::extra_crc(0));
        f.extend_from_slice(&crc.to_le_bytes());
        let mut d = Decoder::new(None);
        let got = d.push_datagram(&f, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header.system_id, 42);
        assert_eq!(got[0].msg, m);
    }
}
