//! How an artifact's bytes map onto R2 multipart parts (pure).
//!
//! R2 multipart rules: at most 10 000 parts, each but the last at least 5 MiB, all of those the same size.
//! The part size is fixed when the upload is created; part `n` (1-based) covers
//! `[(n-1) * part_size, min(n * part_size, size))`, and each PATCH carries exactly one part.

/// R2's smallest part (every part but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// Largest part this Worker accepts: one PATCH body is held in memory while R2 stores it, and requests
/// to a Worker are limited to 100 MB on Cloudflare's smaller plans.
pub const MAX_PART_BYTES: u64 = 64 << 20;
/// Default part size: the minimum, which keeps a PATCH's memory and its re-send after a cut smallest.
pub const DEFAULT_PART_BYTES: u64 = MIN_PART_BYTES;
/// R2's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// The part size for an artifact of `size` bytes: the configured one (clamped to R2's range), raised in
/// whole MiB when `size` would otherwise need more than [`MAX_PARTS`] parts.
pub fn part_size_for(configured: Option<u64>, size: u64) -> u64 {
    let base = configured.unwrap_or(DEFAULT_PART_BYTES).clamp(MIN_PART_BYTES, MAX_PART_BYTES);
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    base.max(needed)
}

/// The committed offset: the bytes of parts 1..=k without a gap (parts are only ever recorded in order,
/// so a gap means a row of another upload generation and is not counted).
pub fn committed_offset(parts: &[(u64, u64)], part_size: u64) -> u64 {
    let mut sorted: Vec<(u64, u64)> = parts.to_vec();
    sorted.sort_unstable();
    let mut offset = 0;
    for (i, (number, size)) in sorted.iter().enumerate() {
        if *number != i as u64 + 1 || offset != (*number - 1) * part_size {
            break;
        }
        offset += size;
    }
    offset
}

/// The part a PATCH at `offset` carrying `len` bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub number: u16,
    pub len: u64,
}

/// Why a PATCH is refused before its body is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchRefusal {
    /// 409: the client is not where the server is (resume from `committed`).
    #[error("Upload-Offset {offset} does not match the committed offset {committed}")]
    WrongOffset { offset: u64, committed: u64 },
    /// 409: nothing is missing.
    #[error("all {size} bytes are committed; finalize the upload")]
    Complete { size: u64 },
    /// 411: the part's length must be known before R2 can take it.
    #[error("a PATCH needs Content-Length")]
    NoLength,
    /// 413: the chunk goes past the declared size.
    #[error("chunk of {len} bytes at {offset} goes past the declared size {size}")]
    PastSize { offset: u64, len: u64, size: u64 },
    /// 400: not one whole part.
    #[error("chunk of {len} bytes at {offset}: this upload takes parts of exactly {expected} bytes (Upload-Part-Size {part_size}; the last part is the rest)")]
    WrongPartSize { offset: u64, len: u64, expected: u64, part_size: u64 },
}

/// Checks a PATCH against the upload (declared `size`, `part_size`, `committed` offset).
pub fn plan_patch(size: u64, part_size: u64, committed: u64, offset: u64, len: Option<u64>) -> Result<PartPlan, PatchRefusal> {
    if committed >= size {
        return Err(PatchRefusal::Complete { size });
    }
    if offset != committed {
        return Err(PatchRefusal::WrongOffset { offset, committed });
    }
    let len = len.ok_or(PatchRefusal::NoLength)?;
    if offset.saturating_add(len) > size {
        return Err(PatchRefusal::PastSize { offset, len, size });
    }
    let expected = part_size.min(size - offset);
    if len != expected || part_size == 0 || !offset.is_multiple_of(part_size) {
        return Err(PatchRefusal::WrongPartSize { offset, len, expected, part_size });
    }
    let number = u16::try_from(offset / part_size + 1).map_err(|_| PatchRefusal::PastSize { offset, len, size })?;
    Ok(PartPlan { number, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn part_sizes_respect_r2() {
        assert_eq!(part_size_for(None, 11 * MIB), 5 * MIB);
        assert_eq!(part_size_for(Some(MIB), 11 * MIB), 5 * MIB, "never under R2's minimum");
        assert_eq!(part_size_for(Some(8 * MIB), 11 * MIB), 8 * MIB);
        assert_eq!(part_size_for(Some(1 << 40), 1), MAX_PART_BYTES);
        // 100 GB would need 19 074 parts of 5 MiB: the size grows so 10 000 suffice.
        let big = 100_000_000_000;
        let p = part_size_for(None, big);
        assert!(big.div_ceil(p) <= MAX_PARTS && p.is_multiple_of(MIB), "{p}");
    }

    #[test]
    fn an_11_mib_artifact_is_three_parts_and_resumes_at_part_boundaries() {
        let (size, ps) = (11 * MIB + 7, 5 * MIB);
        assert_eq!(plan_patch(size, ps, 0, 0, Some(ps)), Ok(PartPlan { number: 1, len: ps }));
        assert_eq!(plan_patch(size, ps, ps, ps, Some(ps)), Ok(PartPlan { number: 2, len: ps }));
        assert_eq!(plan_patch(size, ps, 2 * ps, 2 * ps, Some(MIB + 7)), Ok(PartPlan { number: 3, len: MIB + 7 }));
        assert_eq!(committed_offset(&[(2, ps), (1, ps), (3, MIB + 7)], ps), size);
        // Part 2 was cut off: only part 1 counts, and a resume must start there.
        assert_eq!(committed_offset(&[(1, ps)], ps), ps);
        assert_eq!(plan_patch(size, ps, ps, 2 * ps, Some(ps)), Err(PatchRefusal::WrongOffset { offset: 2 * ps, committed: ps }));
        assert_eq!(committed_offset(&[(2, ps)], ps), 0, "a gap counts nothing");
    }

    #[test]
    fn wrong_chunks_are_refused_before_the_body() {
        let (size, ps) = (11 * MIB, 5 * MIB);
        assert!(
            matches!(plan_patch(size, ps, 0, 0, Some(4 * MIB)), Err(PatchRefusal::WrongPartSize { expected, .. }) if expected == ps)
        );
        assert!(matches!(plan_patch(size, ps, 0, 0, Some(6 * MIB)), Err(PatchRefusal::WrongPartSize { .. })));
        assert_eq!(plan_patch(size, ps, 0, 0, None), Err(PatchRefusal::NoLength));
        assert!(matches!(plan_patch(size, ps, 2 * ps, 2 * ps, Some(2 * MIB)), Err(PatchRefusal::PastSize { .. })));
        assert_eq!(plan_patch(size, ps, size, size, Some(1)), Err(PatchRefusal::Complete { size }));
        // A small artifact is one short last part.
        assert_eq!(plan_patch(1000, ps, 0, 0, Some(1000)), Ok(PartPlan { number: 1, len: 1000 }));
    }
}
