//! Two jobs at once, for work that a second core halves: hashing a bundle while it is decoded
//! or parsed.

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
