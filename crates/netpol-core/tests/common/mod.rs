//! Random-cluster building blocks shared by the property tests (a tiny deterministic generator, so a failing
//! case is reproduced by its seed).
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use netpol_core::selector::{Labels, Requirement, Selector};

/// A tiny deterministic generator, so a failing case is reproduced by its seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

pub fn labels(r: &mut Rng, keys: &[(&str, &[&str])]) -> Labels {
    let mut l = Labels::new();
    for (k, vals) in keys {
        if r.chance(70) {
            l.insert(k.to_string(), r.pick(vals).to_string());
        }
    }
    l
}

pub fn selector(r: &mut Rng, keys: &[(&str, &[&str])]) -> Selector {
    let mut reqs = Vec::new();
    for _ in 0..r.below(3) {
        let (k, vals) = r.pick(keys);
        let v: Vec<String> = vals.iter().filter(|_| r.chance(50)).map(|s| s.to_string()).collect();
        let v = if v.is_empty() { vec![vals[0].to_string()] } else { v };
        reqs.push(match r.below(4) {
            0 => Requirement::In(k.to_string(), v),
            1 => Requirement::NotIn(k.to_string(), v),
            2 => Requirement::Exists(k.to_string()),
            _ => Requirement::DoesNotExist(k.to_string()),
        });
    }
    Selector::from_requirements(reqs)
}

pub const NS_KEYS: &[(&str, &[&str])] = &[("team", &["a", "b"]), ("env", &["x", "y"])];
pub const POD_KEYS: &[(&str, &[&str])] = &[("app", &["a", "b", "c"]), ("tier", &["x", "y"])];
