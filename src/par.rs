//! Work spread over the cores: two jobs at once (hashing a bundle while it is decoded or
//! parsed), or one job over many items (reading and hashing a bundle's files).

/// Bytes below which a second thread costs more than it saves.
pub const WORTH_A_THREAD: usize = 256 * 1024;

/// Runs `a` on this thread and `b` on another when `worth_it`, else one after the other;
/// returns both results. A panic in `b` is passed on.
pub fn join<A, B: Send>(
    worth_it: bool,
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !worth_it {
        let b = b();
        return (a(), b);
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let a = a();
        let b = other
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}

/// The fewest items worth a thread of their own.
pub const AT_LEAST_PER_THREAD: usize = 64;

/// Runs `work` over `items` in chunks, one per core (one chunk only when there are few), and
/// returns the results in order.
pub fn in_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Result<Vec<R>, E> + Sync,
) -> Result<Vec<R>, E> {
    // Too few items for two threads: the cores are not even counted (that reads the process's
    // cgroup files, a dozen calls, more than a small check's work).
    if items.len() < 2 * AT_LEAST_PER_THREAD {
        return work(items);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let threads = cores.min(items.len() / AT_LEAST_PER_THREAD).max(1);
    if threads == 1 {
        return work(items);
    }
    let size = items.len().div_ceil(threads);
    let results: Vec<Result<Vec<R>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(size)
            .map(|chunk| scope.spawn(|| work(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
