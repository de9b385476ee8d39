//! Work on several threads that gives the result of one: scoped threads, and a thread the system does not give is
//! work done on the calling thread instead (a container's thread limit never changes an answer or panics).

use std::thread::{Scope, ScopedJoinHandle};

/// Starts `f` on a thread of `scope`; `Err` when the system gives none.
pub(crate) fn spawn_scoped<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<ScopedJoinHandle<'scope, T>> {
    #[cfg(test)]
    if NO_THREADS.with(std::cell::Cell::get) {
        return Err(std::io::Error::other("no thread (test)"));
    }
    std::thread::Builder::new().spawn_scoped(scope, f)
}

#[cfg(test)]
thread_local! {
    /// Tests: [`spawn_scoped`] on this thread fails, as when the system gives no thread.
    pub(crate) static NO_THREADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `a` and `b` and returns both results: on two threads when `parallel` (and the system gives a thread), else
/// one after the other. A panic in either is raised again on the calling thread.
pub(crate) fn join<A: Send, B: Send + Default>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        let a = a();
        return (a, b());
    }
    // `b` waits here until a thread takes it; if none can be started, this thread runs it after `a`.
    let slot = std::sync::Mutex::new(Some(b));
    std::thread::scope(|scope| {
        let slot = &slot;
        let take = move || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let spawned = spawn_scoped(scope, move || take().map(|b| b()));
        let a = a();
        let b = spawned.ok().and_then(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        // Not started: `b` is still in its slot (a started thread always takes it, so the default is never used).
        (a, b.or_else(|| take().map(|b| b())).unwrap_or_default())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The 1k synthetic cluster: large enough for every parallel path (inputs of 256 KiB or more are decoded on
    /// several threads).
    fn synth_1k() -> String {
        netpol_synth::generate_yaml(&netpol_synth::Params::preset("1k").unwrap())
    }

    fn load(yaml: &str) -> crate::load::Loaded {
        let mut loader = crate::load::Loader::new();
        loader.add_bytes("synth-1k.yaml", yaml.as_bytes());
        loader.finish()
    }

    fn without_threads<T>(f: impl FnOnce() -> T) -> T {
        NO_THREADS.with(|n| n.set(true));
        let t = f();
        NO_THREADS.with(|n| n.set(false));
        t
    }

    #[test]
    fn join_runs_both_sides_when_no_thread_is_given() {
        assert_eq!(join(true, || 1, || vec![2]), (1, vec![2]));
        assert_eq!(without_threads(|| join(true, || 1, || vec![2])), (1, vec![2]));
        assert_eq!(join(false, || 1, || vec![2]), (1, vec![2]));
    }

    #[test]
    fn reading_without_threads_loads_every_object() {
        let yaml = synth_1k();
        assert!(yaml.len() >= 256 << 10, "decoded on several threads when threads are given");
        let with = load(&yaml);
        let without = without_threads(|| load(&yaml));
        assert!(with.cluster.pods.len() >= 1000 && with.diagnostics.is_empty());
        assert_eq!(format!("{:?}", without.cluster.pods), format!("{:?}", with.cluster.pods));
        assert_eq!(format!("{:?}", without.cluster.policies), format!("{:?}", with.cluster.policies));
        assert_eq!(format!("{:?}", without.cluster.namespaces), format!("{:?}", with.cluster.namespaces));
        assert_eq!(format!("{:?}", without.diagnostics), format!("{:?}", with.diagnostics));
    }

    #[test]
    fn counting_a_matrix_without_threads_counts_every_pair() {
        let engine = crate::compile::Engine::new(load(&synth_1k()).cluster);
        let counts = |m: &mut crate::matrix::Matrix, threads: usize| {
            let c = m.pair_counts_threads(&engine, threads, &mut |_| {});
            let mut v: Vec<String> = c.iter().map(|(&ps, &n)| format!("{:?} {n}", m.port_sets.get(ps))).collect();
            v.sort();
            v
        };
        let one = counts(&mut engine.matrix_with_limit(None, 0).unwrap(), 1);
        let two = without_threads(|| counts(&mut engine.matrix_with_limit(None, 0).unwrap(), 2));
        assert!(one.len() > 1);
        assert_eq!(one, two);
    }
}
