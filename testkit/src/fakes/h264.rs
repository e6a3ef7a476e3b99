//! A real, decodable H.264 elementary stream made here, so the replay fakes need no encoder: Constrained
//! Baseline, 64x48 (4x3 macroblocks), CAVLC. IDR pictures carry every macroblock as I_PCM (raw samples,
//! a different pattern per picture); P pictures skip every macroblock (repeat the reference). Each
//! access unit is a list of NAL units without start codes: SPS and PPS before each IDR, as cameras send
//! them in band.

/// Width and height in pixels.
pub const WIDTH: u32 = 64;
pub const HEIGHT: u32 = 48;
const MBS: u32 = (WIDTH / 16) * (HEIGHT / 16);

struct Bits {
    out: Vec<u8>,
    cur: u8,
    n: u8,
}

impl Bits {
    fn new() -> Bits {
        Bits { out: Vec::new(), cur: 0, n: 0 }
    }
    fn bit(&mut self, b: u32) {
        self.cur = (self.cur << 1) | (b & 1) as u8;
        self.n += 1;
        if self.n == 8 {
            self.out.push(self.cur);
            self.cur = 0;
            self.n = 0;
        }
    }
    fn u(&mut self, bits: u32, v: u32) {
        for i in (0..bits).rev() {
            self.bit(v >> i);
        }
    }
    fn ue(&mut self, v: u32) {
        let x = v + 1;
        let len = 32 - x.leading_zeros();
        self.u(len - 1, 0);
        self.u(len, x);
    }
    fn se(&mut self, v: i32) {
        self.ue(if v > 0 { (2 * v - 1) as u32 } else { (-2 * v) as u32 });
    }
    fn align_zero(&mut self) {
        while self.n != 0 {
            self.bit(0);
        }
    }
    /// rbsp_trailing_bits: a stop bit, then zeros to the byte boundary.
    fn trailing(mut self) -> Vec<u8> {
        self.bit(1);
        self.align_zero();
        self.out
    }
}

/// NAL header byte + RBSP with emulation prevention (0x000003 before any 00..03 after two zeros).
fn nal(header: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

pub fn sps() -> Vec<u8> {
    let mut b = Bits::new();
    b.u(8, 66); // profile_idc: Baseline
    b.u(8, 0xC0); // constraint_set0 and set1: Constrained Baseline
    b.u(8, 10); // level 1.0
    b.ue(0); // seq_parameter_set_id
    b.ue(0); // log2_max_frame_num_minus4
    b.ue(2); // pic_order_cnt_type
    b.ue(1); // max_num_ref_frames
    b.u(1, 0); // gaps_in_frame_num_value_allowed_flag
    b.ue(WIDTH / 16 - 1);
    b.ue(HEIGHT / 16 - 1);
    b.u(1, 1); // frame_mbs_only_flag
    b.u(1, 1); // direct_8x8_inference_flag
    b.u(1, 0); // frame_cropping_flag
    b.u(1, 0); // vui_parameters_present_flag
    nal(0x67, &b.trailing())
}

pub fn pps() -> Vec<u8> {
    let mut b = Bits::new();
    b.ue(0); // pic_parameter_set_id
    b.ue(0); // seq_parameter_set_id
    b.u(1, 0); // entropy_coding_mode_flag: CAVLC
    b.u(1, 0); // bottom_field_pic_order_in_frame_present_flag
    b.ue(0); // num_slice_groups_minus1
    b.ue(0); // num_ref_idx_l0_default_active_minus1
    b.ue(0); // num_ref_idx_l1_default_active_minus1
    b.u(1, 0); // weighted_pred_flag
    b.u(2, 0); // weighted_bipred_idc
    b.se(0); // pic_init_qp_minus26
    b.se(0); // pic_init_qs_minus26
    b.se(0); // chroma_qp_index_offset
    b.u(1, 1); // deblocking_filter_control_present_flag
    b.u(1, 0); // constrained_intra_pred_flag
    b.u(1, 0); // redundant_pic_cnt_present_flag
    nal(0x68, &b.trailing())
}

/// An IDR picture of I_PCM macroblocks; `seed` varies the samples (kept in 16..=235).
fn idr(idr_pic_id: u32, seed: u32) -> Vec<u8> {
    let mut b = Bits::new();
    b.ue(0); // first_mb_in_slice
    b.ue(7); // slice_type: I (all slices)
    b.ue(0); // pic_parameter_set_id
    b.u(4, 0); // frame_num
    b.ue(idr_pic_id);
    b.u(1, 0); // no_output_of_prior_pics_flag
    b.u(1, 0); // long_term_reference_flag
    b.se(0); // slice_qp_delta
    b.ue(1); // disable_deblocking_filter_idc
    for mb in 0..MBS {
        b.ue(25); // mb_type I_PCM
        b.align_zero();
        for i in 0..384u32 {
            let v = 16 + (i.wrapping_mul(7) + mb * 13 + seed * 29) % 220;
            b.u(8, v);
        }
    }
    nal(0x65, &b.trailing())
}

/// A P picture that skips every macroblock.
fn p_skip(frame_num: u32) -> Vec<u8> {
    let mut b = Bits::new();
    b.ue(0); // first_mb_in_slice
    b.ue(5); // slice_type: P (all slices)
    b.ue(0); // pic_parameter_set_id
    b.u(4, frame_num % 16);
    b.u(1, 0); // num_ref_idx_active_override_flag
    b.u(1, 0); // ref_pic_list_modification_flag_l0
    b.u(1, 0); // adaptive_ref_pic_marking_mode_flag
    b.se(0); // slice_qp_delta
    b.ue(1); // disable_deblocking_filter_idc
    b.ue(MBS); // mb_skip_run: the whole picture
    nal(0x41, &b.trailing())
}

/// `frames` access units, an IDR (with SPS and PPS) every `gop` pictures.
pub fn stream(frames: usize, gop: usize) -> Vec<Vec<Vec<u8>>> {
    let gop = gop.max(1);
    let mut idr_id = 0;
    (0..frames)
        .map(|i| {
            let k = i % gop;
            if k == 0 {
                idr_id = (idr_id + 1) % 2;
                vec![sps(), pps(), idr(idr_id, i as u32)]
            } else {
                vec![p_skip(k as u32)]
            }
        })
        .collect()
}

/// The Annex-B form (4-byte start codes) of NAL units.
pub fn annex_b<'a>(nals: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_and_pictures_have_no_start_code_emulation() {
        for au in stream(6, 3) {
            for n in au {
                assert!(!n.windows(3).any(|w| w == [0, 0, 1] || w == [0, 0, 0]), "{n:02x?}");
            }
        }
        assert_eq!(sps().first(), Some(&0x67));
        assert!(idr(0, 0).len() > 12 * 384);
    }
}
