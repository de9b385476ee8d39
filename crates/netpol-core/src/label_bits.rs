//! Calico selectors evaluated over many label sets at once.
//!
//! A cluster's endpoints have a few thousand distinct label sets and its policies a few thousand selectors;
//! matching each selector against each set is millions of string comparisons. Here the sets are indexed once by
//! label, and a selector is evaluated bottom-up as bitsets over all sets: a term is an index lookup, `&&`, `||`
//! and `!` are word-wise operations. [`Expr::matches`] stays the definition; a unit test holds the two equal.

use rustc_hash::FxHashMap;

use crate::calico_selector::Expr;
use crate::compile::BitSet;
use crate::labels::{Atom, Labels};

/// Label sets indexed by label key, then value.
pub(crate) struct LabelBits {
    len: usize,
    /// Per key: the sets that have it, and per value the sets that have `key=value` (sorted).
    keys: FxHashMap<Atom, KeyIndex>,
}

#[derive(Default)]
struct KeyIndex {
    sets: Vec<u32>,
    values: FxHashMap<Atom, Vec<u32>>,
}

impl LabelBits {
    pub(crate) fn new<'l>(sets: impl IntoIterator<Item = &'l Labels>) -> Self {
        let mut keys: FxHashMap<Atom, KeyIndex> = FxHashMap::default();
        let mut len = 0;
        for (i, labels) in sets.into_iter().enumerate() {
            for (k, v) in labels.atoms() {
                let key = keys.entry(k.clone()).or_default();
                key.sets.push(i as u32);
                key.values.entry(v.clone()).or_default().push(i as u32);
            }
            len = i + 1;
        }
        LabelBits { len, keys }
    }

    /// The sets `e` matches.
    pub(crate) fn eval(&self, e: &Expr) -> BitSet {
        let of = |ids: &[u32]| {
            let mut b = BitSet::new(self.len);
            ids.iter().for_each(|&i| b.insert(i as usize));
            b
        };
        let value = |key: &str, v: &str| {
            self.keys.get(key).and_then(|k| k.values.get(v)).map_or_else(|| BitSet::new(self.len), |ids| of(ids))
        };
        let values = |key: &str, keep: &dyn Fn(&str) -> bool| {
            let mut b = BitSet::new(self.len);
            if let Some(k) = self.keys.get(key) {
                for (v, ids) in &k.values {
                    if keep(v) {
                        ids.iter().for_each(|&i| b.insert(i as usize));
                    }
                }
            }
            b
        };
        let in_set = |key: &str, vs: &[String]| {
            let mut b = BitSet::new(self.len);
            if let Some(k) = self.keys.get(key) {
                for v in vs {
                    k.values.get(v.as_str()).into_iter().flatten().for_each(|&i| b.insert(i as usize));
                }
            }
            b
        };
        match e {
            Expr::All | Expr::Global => self.not(BitSet::new(self.len)),
            Expr::Has(key) => self.keys.get(key.as_str()).map_or_else(|| BitSet::new(self.len), |k| of(&k.sets)),
            Expr::Eq { key, value: v } => value(key, v),
            Expr::Ne { key, value: v } => self.not(value(key, v)),
            Expr::Contains { key, value: v } => values(key, &|x| x.contains(v.as_str())),
            Expr::StartsWith { key, value: v } => values(key, &|x| x.starts_with(v.as_str())),
            Expr::EndsWith { key, value: v } => values(key, &|x| x.ends_with(v.as_str())),
            Expr::In { key, values: vs } => in_set(key, vs),
            Expr::NotIn { key, values: vs } => self.not(in_set(key, vs)),
            Expr::Not(x) => self.not(self.eval(x)),
            Expr::And(xs) => {
                let mut it = xs.iter();
                let mut b = it.next().map_or_else(|| self.not(BitSet::new(self.len)), |x| self.eval(x));
                for x in it {
                    if b.count() == 0 {
                        break;
                    }
                    b.and_with(&self.eval(x));
                }
                b
            }
            Expr::Or(xs) => {
                let mut b = BitSet::new(self.len);
                for x in xs {
                    b.or_with(&self.eval(x));
                }
                b
            }
        }
    }

    /// The complement of `b` among the sets.
    fn not(&self, mut b: BitSet) -> BitSet {
        b.complement(self.len);
        b
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::calico_selector::parse;

    /// `eval` agrees with `Expr::matches` on every set, over generated selectors of the whole grammar.
    #[test]
    fn eval_agrees_with_matches() {
        let keys = ["app", "tier", "team", "projectcalico.org/namespace"];
        let values = ["web", "db", "", "web-1", "api"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let sets: Vec<Labels> = (0..70)
            .map(|_| {
                let mut pairs: Vec<(String, String)> = Vec::new();
                for k in keys {
                    if next(3) != 0 {
                        pairs.push((k.to_string(), values[next(values.len())].to_string()));
                    }
                }
                pairs.into_iter().collect()
            })
            .collect();
        let bits = LabelBits::new(&sets);
        fn text(next: &mut dyn FnMut(usize) -> usize, keys: &[&str], values: &[&str], depth: usize) -> String {
            let k = keys[next(keys.len())];
            let v = values[next(values.len())];
            let w = values[next(values.len())];
            if depth > 0 && next(3) == 0 {
                let op = ["&&", "||"][next(2)];
                let a = text(next, keys, values, depth - 1);
                let b = text(next, keys, values, depth - 1);
                return format!("({a}) {op} ({b})");
            }
            match next(13) {
                0 => "all()".into(),
                1 => "global()".into(),
                2 => format!("has({k})"),
                3 => format!("!has({k})"),
                4 => format!("{k} == '{v}'"),
                5 => format!("{k} != '{v}'"),
                6 => format!("{k} contains '{v}'"),
                7 => format!("{k} starts with '{v}'"),
                8 => format!("{k} ends with '{v}'"),
                9 => format!("{k} in {{'{v}', '{w}'}}"),
                10 => format!("{k} not in {{'{v}', '{w}'}}"),
                11 if depth > 0 => format!("!({})", text(next, keys, values, depth - 1)),
                _ => format!("{k} == '{v}' && has({w}x)"),
            }
        }
        for _ in 0..3000 {
            let t = text(&mut next, &keys, &values, 3);
            let e = parse(&t).unwrap();
            let b = bits.eval(&e);
            for (i, s) in sets.iter().enumerate() {
                assert_eq!(b.contains(i), e.matches(s), "{t} on {s:?}");
            }
            assert!(b.iter().all(|i| i < sets.len()), "{t}: bits past the sets");
        }
    }
}
