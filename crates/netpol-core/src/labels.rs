//! Labels as the engine keeps them: a sorted, shared slice of (key, value) pairs of shared strings, and the
//! interner that makes equal strings and equal label sets one allocation.
//!
//! A cluster repeats itself: every replica of a workload carries the same labels, and a handful of keys (`app`,
//! `tier`, `kubernetes.io/metadata.name`) appear on nearly every object. A `BTreeMap<String, String>` per pod spent
//! a B-tree node (over 500 bytes) plus two allocations per label; here an interned label set costs one pointer per
//! pod, and a distinct one a single allocation of 32 bytes per label, its strings shared with every other object.

use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;

/// A shared, immutable string (cheap to clone; equal strings from one load share one allocation).
pub type Atom = Arc<str>;

/// Labels of a pod or namespace, sorted by key, keys unique. Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[(Atom, Atom)]>);

impl Default for Labels {
    fn default() -> Self {
        Labels::new()
    }
}

impl Labels {
    /// Where the shared set lives: equal for clones of one set (equal sets built apart have different addresses).
    pub(crate) fn address(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }

    pub fn new() -> Self {
        Labels(Arc::from([]))
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The pairs in key order, as the shared strings themselves.
    pub fn atoms(&self) -> &[(Atom, Atom)] {
        &self.0
    }

    /// Whether both are the same shared copy (interned label sets are).
    pub fn same_allocation(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An owned copy as a map (for answers whose schema is a plain string map).
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Sets `key` to `value` (a copy of the set: labels are built once and then shared).
    pub fn insert(&mut self, key: impl Into<Atom>, value: impl Into<Atom>) {
        let (key, value) = (key.into(), value.into());
        let mut pairs = self.0.to_vec();
        match self.position(&key) {
            Ok(i) => pairs[i].1 = value,
            Err(i) => pairs.insert(i, (key, value)),
        }
        self.0 = pairs.into();
    }
}

/// Later pairs win for a repeated key, as with a map.
impl<K: Into<Atom>, V: Into<Atom>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Atom, Atom)> = iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        // Stable: of equal keys the last one written stays last, and is the one kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Atom, Atom)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Labels(out.into())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Makes equal strings and equal label sets share one allocation. One per load; dropped with the loader (the
/// model keeps what it references).
#[derive(Default)]
pub struct Interner {
    strings: HashSet<Atom>,
    labels: HashSet<Labels>,
    pub(crate) selectors: HashSet<crate::selector::Selector>,
    ports: HashSet<Arc<[crate::model::ContainerPort]>>,
}

impl Interner {
    pub fn atom(&mut self, s: &str) -> Atom {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Atom = s.into();
        self.strings.insert(a.clone());
        a
    }

    /// The shared copy of a pod's container ports.
    pub fn ports(&mut self, ports: Vec<crate::model::ContainerPort>) -> Arc<[crate::model::ContainerPort]> {
        if let Some(p) = self.ports.get(&ports[..]) {
            return p.clone();
        }
        let p: Arc<[_]> = ports
            .into_iter()
            .map(|mut c| {
                c.name = c.name.map(|n| self.atom(&n));
                c
            })
            .collect();
        self.ports.insert(p.clone());
        p
    }

    /// The shared copy of `labels`, its strings interned.
    pub fn labels(&mut self, labels: Labels) -> Labels {
        if let Some(l) = self.labels.get(&labels) {
            return l.clone();
        }
        let pairs: Vec<(Atom, Atom)> = labels.0.iter().map(|(k, v)| (self.atom(k), self.atom(v))).collect();
        let l = Labels(pairs.into());
        self.labels.insert(l.clone());
        l
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map() {
        let mut l: Labels = [("tier", "db"), ("app", "web"), ("app", "api")].into_iter().collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), [("app", "api"), ("tier", "db")]);
        assert_eq!(l.get("app"), Some("api"));
        assert_eq!(l.get("nope"), None);
        assert!(l.contains_key("tier") && !l.contains_key("ti"));
        l.insert("b", "1");
        l.insert("app", "x");
        assert_eq!(l.iter().collect::<Vec<_>>(), [("app", "x"), ("b", "1"), ("tier", "db")]);
        assert_eq!(l.len(), 3);
        assert_eq!(format!("{l:?}"), r#"{"app": "x", "b": "1", "tier": "db"}"#);
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"app":"x","b":"1","tier":"db"}"#);
        assert!(Labels::new().is_empty());
    }

    #[test]
    fn interning_shares_sets_and_strings() {
        let mut i = Interner::default();
        let a = i.labels([("app", "web")].into_iter().collect());
        let b = i.labels([("app", "web")].into_iter().collect());
        assert!(a.same_allocation(&b));
        let c = i.labels([("app", "db")].into_iter().collect());
        assert!(Arc::ptr_eq(&a.0[0].0, &c.0[0].0), "the key `app` is one string");
        assert_ne!(a, c);
    }
}
