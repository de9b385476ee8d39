//! A tiny deterministic PRNG (splitmix64) with independent, addressable streams.
//!
//! Every decision of the generator draws from a stream named by `(seed, stream, index)`, so e.g. the labels
//! of namespace 42 do not change when the number of policies changes.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser: a good 64-bit mixing function.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream tags.
pub(crate) const S_POD_WEIGHTS: u64 = 1;
pub(crate) const S_POLICY_WEIGHTS: u64 = 2;
pub(crate) const S_NAMESPACE: u64 = 3;
pub(crate) const S_APPS: u64 = 4;
pub(crate) const S_POLICIES: u64 = 5;
pub(crate) const S_POD: u64 = 6;
pub(crate) const S_SYSTEM: u64 = 7;
pub(crate) const S_CALICO: u64 = 8;
pub(crate) const S_SERVICE_ACCOUNTS: u64 = 9;
pub(crate) const S_CALICO_NETS: u64 = 10;
pub(crate) const S_NODES: u64 = 11;
pub(crate) const S_CILIUM: u64 = 12;
pub(crate) const S_ANTREA: u64 = 13;

#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64, index: u64) -> Self {
        let s = mix(stream.wrapping_mul(GOLDEN) ^ mix(index.wrapping_add(0xD6E8_FEB8_6659_FD93)));
        Rng(mix(seed ^ s))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// True with probability `pct`%.
    pub(crate) fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

/// Kubernetes' "safe" alphabet for generated name suffixes (no vowels, no confusable characters).
const SAFE: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// Appends `n` characters of the safe alphabet encoding `v` (base 27, least significant first).
pub(crate) fn push_safe(o: &mut String, mut v: u64, n: usize) {
    for _ in 0..n {
        let c = SAFE.get((v % 27) as usize).copied().unwrap_or(b'x');
        o.push(char::from(c));
        v /= 27;
    }
}
