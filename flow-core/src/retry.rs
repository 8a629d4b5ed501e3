//! Retry policy: how many attempts a step gets and how long to wait between them.

use std::time::Duration;

/// Retries a function gives its steps when neither says otherwise (Inngest's default).
pub const DEFAULT_RETRIES: u32 = 4;
/// The most retries a function or step may ask for.
pub const MAX_RETRIES: u32 = 20;

/// Exponential backoff with jitter: attempt `n` (1-based) waits
/// `min(initial * factor^(n-1), max)`, less a random share of up to `jitter` of it.
///
/// ```
/// # use flow_core::Backoff;
/// # use std::time::Duration;
/// let b = Backoff { jitter: 0.0, ..Backoff::DEFAULT };
/// assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
/// assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How much each wait grows over the previous one.
    pub factor: f64,
    /// The share of each wait (0.0..=1.0) taken off at random, so that retries of
    /// many runs that failed together spread out.
    pub jitter: f64,
}

impl Backoff {
    /// 1 s, doubling, at most 10 minutes, up to 20 % jitter.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(600),
        factor: 2.0,
        jitter: 0.2,
    };

    /// The wait after failed attempt `attempt` (1-based); `random` is in `0.0..1.0`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let raw = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let capped = raw.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        // NaN settings (only possible from code, not from the macros) give the longest wait.
        Duration::try_from_secs_f64(capped * (1.0 - jitter)).unwrap_or(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// Per-step overrides of the function's backoff; unset fields keep the function's value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackoffOverride {
    /// Overrides [`Backoff::initial`].
    pub initial: Option<Duration>,
    /// Overrides [`Backoff::max`].
    pub max: Option<Duration>,
    /// Overrides [`Backoff::factor`].
    pub factor: Option<f64>,
    /// Overrides [`Backoff::jitter`].
    pub jitter: Option<f64>,
}

impl BackoffOverride {
    /// No overrides.
    pub const NONE: BackoffOverride = BackoffOverride {
        initial: None,
        max: None,
        factor: None,
        jitter: None,
    };

    /// `base` with these overrides applied.
    pub fn apply(&self, base: Backoff) -> Backoff {
        self.apply_const(base)
    }

    /// [`BackoffOverride::apply`], usable in constants (the macros build a
    /// function's backoff at compile time).
    pub const fn apply_const(&self, base: Backoff) -> Backoff {
        Backoff {
            initial: match self.initial {
                Some(d) => d,
                None => base.initial,
            },
            max: match self.max {
                Some(d) => d,
                None => base.max,
            },
            factor: match self.factor {
                Some(f) => f,
                None => base.factor,
            },
            jitter: match self.jitter {
                Some(j) => j,
                None => base.jitter,
            },
        }
    }
}

/// Options of one step call: `#[step(retries = 3, backoff(initial = "100ms"))]` or
/// [`Ctx::run_with`](crate::Ctx::run_with).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepOptions {
    /// Retries after the first attempt; the function's `retries` when unset.
    pub retries: Option<u32>,
    /// Changes to the function's backoff for this step.
    pub backoff: BackoffOverride,
}

impl StepOptions {
    /// The function's settings, unchanged.
    pub const DEFAULT: StepOptions = StepOptions {
        retries: None,
        backoff: BackoffOverride::NONE,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_downwards() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            factor: 3.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(300));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(900));
        assert_eq!(b.delay(4, 0.0), Duration::from_millis(1000));
        assert_eq!(b.delay(30, 0.0), Duration::from_millis(1000));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(150));
    }

    #[test]
    fn nonsense_settings_never_panic() {
        let nan = Backoff {
            factor: f64::NAN,
            jitter: f64::NAN,
            ..Backoff::DEFAULT
        };
        assert_eq!(nan.delay(3, 0.5), Backoff::DEFAULT.max);
        let huge = Backoff {
            max: Duration::MAX,
            factor: 1e300,
            jitter: 0.0,
            ..Backoff::DEFAULT
        };
        assert!(huge.delay(50, 0.5) > Duration::from_secs(1));
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let o = BackoffOverride {
            initial: Some(Duration::from_millis(5)),
            ..BackoffOverride::NONE
        };
        let b = o.apply(Backoff::DEFAULT);
        assert_eq!(b.initial, Duration::from_millis(5));
        assert_eq!(b.max, Backoff::DEFAULT.max);
    }
}
