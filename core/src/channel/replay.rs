//! Sliding replay window over explicit 64-bit nonces (in the manner of RFC 6479 / IPsec).

/// How many nonces below the highest accepted one are still accepted (once each).
pub const REPLAY_WINDOW: u64 = 1024;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Bit `i` of the bitmap stands for nonce `top - 1 - i`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    /// One more than the highest accepted nonce; 0 before the first.
    top: u64,
    bits: [u64; WORDS],
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fresh,
    Replay,
    Stale,
}

impl ReplayWindow {
    /// Classifies a nonce without recording it; call [`ReplayWindow::commit`] once the frame authenticated.
    pub(crate) fn check(&self, nonce: u64) -> Verdict {
        if nonce >= self.top {
            return Verdict::Fresh;
        }
        let age = self.top - 1 - nonce;
        if age >= REPLAY_WINDOW {
            return Verdict::Stale;
        }
        if self.bits[(age / 64) as usize] & (1 << (age % 64)) != 0 {
            Verdict::Replay
        } else {
            Verdict::Fresh
        }
    }

    pub(crate) fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    pub(crate) fn commit(&mut self, nonce: u64) {
        if nonce >= self.top {
            self.shift(nonce + 1 - self.top);
            self.top = nonce + 1;
            self.bits[0] |= 1;
        } else {
            let age = self.top - 1 - nonce;
            self.bits[(age / 64) as usize] |= 1 << (age % 64);
        }
    }

    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_nonce_once_within_the_window() {
        let mut w = ReplayWindow::default();
        for n in [5u64, 3, 7, 4, 1000, 6, 999] {
            assert_eq!(w.check(n), Verdict::Fresh, "nonce {n}");
            w.commit(n);
            assert_eq!(w.check(n), Verdict::Replay, "nonce {n}");
        }
        assert_eq!(w.check(2000), Verdict::Fresh);
        w.commit(2000);
        assert_eq!(w.check(2000 - REPLAY_WINDOW), Verdict::Stale);
        assert_eq!(w.check(2000 - REPLAY_WINDOW + 1), Verdict::Fresh);
        assert_eq!(w.check(1000), Verdict::Replay);
        assert_eq!(w.check(999), Verdict::Replay);
        assert_eq!(w.check(998), Verdict::Fresh);
    }

    #[test]
    fn shifting_matches_a_naive_set() {
        let mut w = ReplayWindow::default();
        let mut seen = alloc::collections::BTreeSet::new();
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let top = seen.iter().next_back().copied().unwrap_or(0);
            let nonce = (top + (x >> 33) % 200).saturating_sub((x >> 20) % 1100);
            let expected = if !seen.is_empty() && nonce < top && top - nonce >= REPLAY_WINDOW {
                Verdict::Stale
            } else if seen.contains(&nonce) {
                Verdict::Replay
            } else {
                Verdict::Fresh
            };
            assert_eq!(w.check(nonce), expected, "nonce {nonce} top {top}");
            if expected == Verdict::Fresh {
                w.commit(nonce);
                seen.insert(nonce);
            }
        }
    }
}
