//! RTP (RFC 3550) packets carrying H.264 (RFC 6184) back into an Annex-B elementary stream, written
//! to a sink as the packets arrive (nothing is collected): single NAL unit packets, STAP-A
//! aggregates and FU-A fragments. Interleaved modes (STAP-B, MTAP, FU-B) are never sent over a
//! single TCP session by cameras; such packets are counted and skipped.

use std::io;

const START: [u8; 4] = [0, 0, 0, 1];
/// ONVIF replay RTP header extension (ONVIF Streaming Specification, "RTP header extension").
pub const ONVIF_REPLAY_EXT: u16 = 0xABAC;
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The parts of an RTP packet the exporter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    /// Header extension: profile id and data.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
}

fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

/// Parses an RTP packet: version 2, CSRCs skipped, extension and padding honoured. `None` when the
/// packet is shorter than its header says.
pub fn parse_rtp(pkt: &[u8]) -> Option<Rtp<'_>> {
    let (head, rest) = pkt.split_at_checked(12)?;
    let (&b0, &b1) = (head.first()?, head.get(1)?);
    if b0 >> 6 != 2 {
        return None;
    }
    let (_, mut rest) = rest.split_at_checked(usize::from(b0 & 0x0f) * 4)?;
    let mut extension = None;
    if b0 & 0x10 != 0 {
        let (eh, r) = rest.split_at_checked(4)?;
        let words = usize::from(be16(eh.get(2..)?)?);
        let (data, r) = r.split_at_checked(words * 4)?;
        extension = Some((be16(eh)?, data));
        rest = r;
    }
    if b0 & 0x20 != 0 {
        let pad = usize::from(*rest.last()?);
        rest = rest.get(..rest.len().checked_sub(pad)?)?;
    }
    Some(Rtp {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        seq: be16(head.get(2..)?)?,
        timestamp: u32::from_be_bytes(head.get(4..8)?.try_into().ok()?),
        extension,
        payload: rest,
    })
}

/// Wall-clock time (ms since the epoch) of a packet from its ONVIF replay extension's NTP timestamp.
pub fn onvif_time_ms(ext: Option<(u16, &[u8])>) -> Option<u64> {
    let (profile, data) = ext?;
    if profile != ONVIF_REPLAY_EXT {
        return None;
    }
    let ntp = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET)?;
    // Rounded to the nearest ms: a fraction made from whole ms truncates to just below it.
    Some(secs * 1000 + (((ntp & 0xffff_ffff) * 1000 + (1 << 31)) >> 32))
}

/// Annex-B writer for one H.264 RTP stream.
#[derive(Debug, Default)]
pub struct Depacketizer {
    /// Inside a fragmented NAL unit whose start was written.
    in_fragment: bool,
    /// NAL units started in the output.
    pub nal_units: u64,
    /// Bytes written to the sink.
    pub bytes: u64,
    /// Packets that could not be used (unknown type, truncated aggregate, fragment without start).
    pub skipped: u64,
}

type Sink<'s> = dyn FnMut(&[u8]) -> io::Result<()> + 's;

impl Depacketizer {
    fn write(&mut self, sink: &mut Sink<'_>, b: &[u8]) -> io::Result<()> {
        self.bytes += b.len() as u64;
        sink(b)
    }

    /// Writes one whole NAL unit with its start code (also used for the SDP's parameter sets).
    pub fn nal(&mut self, nal: &[u8], sink: &mut Sink<'_>) -> io::Result<()> {
        if nal.is_empty() {
            return Ok(());
        }
        self.in_fragment = false;
        self.nal_units += 1;
        self.write(sink, &START)?;
        self.write(sink, nal)
    }

    /// Writes what one RTP payload carries.
    pub fn push(&mut self, payload: &[u8], sink: &mut Sink<'_>) -> io::Result<()> {
        let Some((&indicator, rest)) = payload.split_first() else {
            self.skipped += 1;
            return Ok(());
        };
        match indicator & 0x1f {
            1..=23 => self.nal(payload, sink),
            24 => {
                // STAP-A: 16-bit size, NAL unit, repeated. A truncated tail is skipped.
                let mut rest = rest;
                while !rest.is_empty() {
                    let Some(len) = be16(rest).map(usize::from) else { break };
                    let Some((nal, tail)) = rest.get(2..).and_then(|r| r.split_at_checked(len)) else { break };
                    self.nal(nal, sink)?;
                    rest = tail;
                }
                if !rest.is_empty() {
                    self.skipped += 1;
                }
                Ok(())
            }
            28 => {
                let Some((&fu, data)) = rest.split_first() else {
                    self.skipped += 1;
                    return Ok(());
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    self.nal_units += 1;
                    self.write(sink, &START)?;
                    self.write(sink, &[(indicator & 0xe0) | (fu & 0x1f)])?;
                    self.in_fragment = true;
                } else if !self.in_fragment {
                    // Its start was lost or came before the export began: not a NAL unit we can write.
                    self.skipped += 1;
                    return Ok(());
                }
                self.write(sink, data)?;
                if end {
                    self.in_fragment = false;
                }
                Ok(())
            }
            _ => {
                self.skipped += 1;
                Ok(())
            }
        }
    }
}

/// NAL units of an SDP `sprop-parameter-sets` value (base64, comma separated).
pub fn sprop_parameter_sets(value: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    value
        .split(',')
        .filter_map(|p| base64::engine::general_purpose::STANDARD.decode(p.trim()).ok())
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(payloads: &[&[u8]]) -> (Vec<u8>, Depacketizer) {
        let mut out = Vec::new();
        let mut d = Depacketizer::default();
        for p in payloads {
            d.push(p, &mut |b: &[u8]| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        }
        (out, d)
    }

    #[test]
    fn single_stap_a_and_fu_a_become_annex_b() {
        let stap: &[u8] = &[0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 9];
        let fu1: &[u8] = &[0x7c, 0x85, 0xaa, 0xbb];
        let fu2: &[u8] = &[0x7c, 0x05, 0xcc];
        let fu3: &[u8] = &[0x7c, 0x45, 0xdd];
        let single: &[u8] = &[0x41, 0x9a, 0x01];
        let (out, d) = run(&[stap, fu1, fu2, fu3, single]);
        assert_eq!(
            out,
            [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 9, 0, 0, 0, 1, 0x65, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1, 0x41, 0x9a, 1]
        );
        assert_eq!((d.nal_units, d.bytes, d.skipped), (4, out.len() as u64, 0));
    }

    #[test]
    fn broken_packets_are_skipped_not_fatal() {
        let orphan: &[u8] = &[0x7c, 0x05, 0xcc];
        let stap_short: &[u8] = &[0x78, 0, 9, 0x67];
        let (out, d) = run(&[&[], orphan, stap_short, &[0x7d, 0x80], &[0x7c]]);
        assert!(out.is_empty());
        assert_eq!(d.skipped, 5);
    }

    #[test]
    fn rtp_header_extension_padding_and_onvif_time() {
        let mut p = vec![0xB1, 0xE0, 0x10, 0x00, 0, 0, 0, 9, 1, 2, 3, 4, 9, 9, 9, 9];
        p.extend_from_slice(&[0xAB, 0xAC, 0, 3]);
        // 2026-12-06T10:00:00.500Z as NTP.
        let ntp = ((1_796_551_200u64 + 2_208_988_800) << 32) | (1u64 << 31);
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&[0x80, 4, 0, 0, 0x41, 0x9a, 0, 0, 2]);
        let r = parse_rtp(&p).unwrap();
        assert!(r.marker);
        assert_eq!((r.payload_type, r.seq, r.timestamp), (96, 4096, 9));
        assert_eq!(r.payload, [0x41, 0x9a, 0]);
        assert_eq!(onvif_time_ms(r.extension), Some(1_796_551_200_500));
        assert_eq!(parse_rtp(&p[..20]), None);
        assert_eq!(parse_rtp(&[0x40; 12]), None, "version 1");
        assert_eq!(sprop_parameter_sets("Z0LAKPQDwBE/Kg==, aM48gA==,!!").len(), 2);
    }
}
