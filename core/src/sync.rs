//! The one lock the core needs (the software vault's key table, the verified-signature cache): std's mutex
//! with `std`, a spin lock without it (a microcontroller has no threads to block; interrupts that use the
//! same vault must not preempt a holder, as with any spin lock).

/// A mutex whose `lock` fails only when std's lock is poisoned.
pub(crate) struct Mutex<T>(
    #[cfg(feature = "std")] std::sync::Mutex<T>,
    #[cfg(not(feature = "std"))] spin::Mutex<T>,
);

#[cfg(feature = "std")]
pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;
#[cfg(not(feature = "std"))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        #[cfg(feature = "std")]
        {
            Mutex(std::sync::Mutex::new(value))
        }
        #[cfg(not(feature = "std"))]
        {
            Mutex(spin::Mutex::new(value))
        }
    }

    /// `None` only when a holder panicked (std); the caller decides what that means.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(feature = "std")]
        {
            self.0.lock().ok()
        }
        #[cfg(not(feature = "std"))]
        {
            Some(self.0.lock())
        }
    }
}
