//! Folding events into connection classes: one [`Folded`] per (source end, destination end, protocol, port), the
//! source port left out. An end with a pod name or an address is that pod or address (the labels of its first event
//! are kept); an end with neither (an aggregated workload) is its name, namespace and labels. Memory grows with the classes (and a bounded window of recent connections), not the log.
//!
//! Connections are counted so: a record that counts them (`Observed::connections`, an aggregated log) gives its
//! count; a reply, or an event that does not open a connection (`opens: Some(false)`: a TCP segment that is no
//! SYN), counts none; any other event counts one, unless its 5-tuple (source address or pod, source port,
//! destination address or pod, port, protocol) was counted among the recent connections ([`WINDOW`] of them, the
//! least recently seen forgotten first). The window folds what one connection logs many times: a SYN seen at the
//! source's egress and again at the destination's ingress, retransmitted SYNs, the packets of a UDP flow, the
//! `connect` and the `accept` of a traced connection. An event without a source port cannot be told from the
//! other connections of its class: each counts one.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

use super::{Counts, End, Folded, Observed, Side, Verdict};

/// How many recent connections the window remembers.
pub const WINDOW: usize = 65_536;

struct Class {
    folded: Folded,
    file: usize,
    policies: BTreeSet<String>,
}

/// Folds events ([`Folder::add`]) into classes ([`Folder::finish`]).
pub struct Folder {
    classes: Vec<Class>,
    /// Class hash → the classes with it.
    index: FxHashMap<u64, Vec<usize>>,
    files: Vec<String>,
    window: Window,
}

impl Default for Folder {
    fn default() -> Self {
        Folder::new()
    }
}

/// Recent 5-tuples (as 64-bit hashes), least recently seen forgotten first.
struct Window {
    cap: usize,
    seen: FxHashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
    tick: u64,
}

impl Window {
    /// Records `key`; whether it was already there.
    fn touch(&mut self, key: u64) -> bool {
        self.tick += 1;
        let was = self.seen.insert(key, self.tick).is_some();
        self.order.push_back((key, self.tick));
        while self.seen.len() > self.cap || self.order.len() > 2 * self.cap.max(1) {
            let Some((k, t)) = self.order.pop_front() else { break };
            if self.seen.get(&k) == Some(&t) {
                self.seen.remove(&k);
            }
        }
        was
    }
}

fn end_id(e: &End, h: &mut FxHasher) {
    match (&e.ip, &e.pod) {
        (Some(ip), _) => ip.hash(h),
        (None, Some(pod)) => (&e.namespace, pod).hash(h),
        (None, None) => e.hash(h),
    }
}

/// What tells one end of a class from another: a pod (or address) is itself, whatever labels an event gives it (the
/// first event's are kept); an end with neither (an aggregated one) is its labels too.
fn class_end(e: &End, h: &mut FxHasher) {
    (&e.namespace, &e.pod, &e.ip, &e.aggregated, &e.kind).hash(h);
    if e.pod.is_none() && e.ip.is_none() {
        e.labels.hash(h);
    }
}

fn same_end(a: &End, b: &End) -> bool {
    a.namespace == b.namespace
        && a.pod == b.pod
        && a.ip == b.ip
        && a.aggregated == b.aggregated
        && a.kind == b.kind
        && (a.pod.is_some() || a.ip.is_some() || a.labels == b.labels)
}

impl Folder {
    /// An empty folder with the default window ([`WINDOW`] connections).
    pub fn new() -> Self {
        Folder::with_window(WINDOW)
    }

    /// An empty folder remembering `window` recent connections.
    pub fn with_window(window: usize) -> Self {
        Folder {
            classes: Vec::new(),
            index: FxHashMap::default(),
            files: Vec::new(),
            window: Window { cap: window, seen: FxHashMap::default(), order: VecDeque::new(), tick: 0 },
        }
    }

    /// How many classes so far.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether no event was added.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The index of `file` among the files added (the last one is checked first).
    fn file_id(&mut self, file: &str) -> usize {
        if self.files.last().is_some_and(|f| f == file) {
            return self.files.len() - 1;
        }
        match self.files.iter().position(|f| f == file) {
            Some(id) => id,
            None => {
                self.files.push(file.to_string());
                self.files.len() - 1
            }
        }
    }

    /// The connections `o` stands for.
    fn connections(&mut self, o: &Observed) -> u64 {
        if let Some(c) = o.connections {
            return c;
        }
        if o.reply || o.opens == Some(false) {
            return 0;
        }
        let Some(sport) = o.src_port else { return 1 };
        let mut h = FxHasher::default();
        end_id(&o.src, &mut h);
        sport.hash(&mut h);
        end_id(&o.dst, &mut h);
        o.port.hash(&mut h);
        o.protocol.hash(&mut h);
        u64::from(!self.window.touch(h.finish()))
    }

    /// Adds one event read from `file`.
    pub fn add(&mut self, file: &str, o: Observed) {
        let connections = self.connections(&o);
        let mut h = FxHasher::default();
        class_end(&o.src, &mut h);
        class_end(&o.dst, &mut h);
        (o.protocol, o.port).hash(&mut h);
        let key = h.finish();
        let found = self.index.get(&key).and_then(|ids| {
            ids.iter().copied().find(|&i| {
                let f = &self.classes[i].folded;
                same_end(&f.src, &o.src) && same_end(&f.dst, &o.dst) && f.protocol == o.protocol && f.port == o.port
            })
        });
        let i = match found {
            Some(i) => i,
            None => {
                let file_id = self.file_id(file);
                self.index.entry(key).or_default().push(self.classes.len());
                self.classes.push(Class {
                    folded: Folded {
                        src: o.src,
                        dst: o.dst,
                        protocol: o.protocol,
                        port: o.port,
                        connections: 0,
                        events: 0,
                        counts: Counts::default(),
                        policies: Vec::new(),
                        file: file.to_string(),
                        line: o.line,
                        first_time: None,
                        last_time: None,
                        format: o.format,
                    },
                    file: file_id,
                    policies: BTreeSet::new(),
                });
                self.classes.len() - 1
            }
        };
        let file_id = self.file_id(file);
        let c = &mut self.classes[i];
        let f = &mut c.folded;
        f.connections = f.connections.saturating_add(connections);
        f.events = f.events.saturating_add(o.events);
        let n = o.events;
        let slot = match (o.verdict, o.side) {
            (Some(Verdict::Allowed), Side::Both) => &mut f.counts.allowed,
            (Some(Verdict::Denied), Side::Both) => &mut f.counts.denied,
            (Some(Verdict::Allowed), Side::Egress) => &mut f.counts.egress_allowed,
            (Some(Verdict::Denied), Side::Egress) => &mut f.counts.egress_denied,
            (Some(Verdict::Allowed), Side::Ingress) => &mut f.counts.ingress_allowed,
            (Some(Verdict::Denied), Side::Ingress) => &mut f.counts.ingress_denied,
            (None, _) => &mut f.counts.unknown,
        };
        *slot = slot.saturating_add(n);
        // A class seen first in a later line of the same file (a joined record) starts there.
        if c.file == file_id && o.line < f.line {
            f.line = o.line;
        }
        if let Some(t) = o.time {
            if f.first_time.as_ref().is_none_or(|x| t < *x) {
                f.first_time = Some(t.clone());
            }
            if f.last_time.as_ref().is_none_or(|x| t > *x) {
                f.last_time = Some(t);
            }
        }
        c.policies.extend(o.policies);
    }

    /// The classes, in the order they were first seen (by file, in the order files were first added, then line).
    pub fn finish(self) -> Vec<Folded> {
        let mut classes = self.classes;
        classes.sort_by_key(|c| (c.file, c.folded.line));
        classes
            .into_iter()
            .map(|c| {
                let mut f = c.folded;
                f.policies = c.policies.into_iter().collect();
                f
            })
            .collect()
    }
}
