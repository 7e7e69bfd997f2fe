//! The gate every command from the ground passes before it is executed
//! (sans-IO: the caller passes the time).
//!
//! In order, a command is refused when:
//! 1. its id was already accepted within its validity window (a replay,
//!    or MQTT delivering twice): not executed again and **not answered**
//!    (an answer would carry the genuine command's id and overwrite its
//!    real result at the ground);
//! 2. its signature does not verify against the configured ground-station
//!    keys (no key configured, unsigned, unknown key, malformed or bad
//!    signature): answered `unauthorized` with the reason;
//! 3. it has expired: answered `expired`;
//! 4. it was issued further in the future than the clock-skew tolerance,
//!    claims a validity longer than the configured maximum, or was issued
//!    before this process started (the previous run may have executed it
//!    and its memory of seen ids is gone): answered `refused` with the
//!    reason. (If the ground's clock runs ahead of ours by up to the skew
//!    tolerance, a command issued just before a restart can look issued
//!    after it; that window is the tolerance, 5 s by default.)
//! 5. the window of remembered ids is full (more commands within the
//!    maximum validity than anyone sends): answered `refused`.
//!
//! Accepted ids are remembered until their expiry plus the skew tolerance,
//! and no longer, so memory is bounded by `max_seen` and by time.
//! Answers to refusals are rate-limited (a flood of forged commands must
//! not fill the spool); beyond the limit they are only logged.

use std::collections::{BTreeSet, HashMap, VecDeque};

use tiancha_protocol::command_auth::{AuthError, TrustedKeys};
use tiancha_protocol::{Command, CommandStatus};
use uuid::Uuid;

/// The guard's limits (from `[commands]` in the companion config).
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// How far ahead of our clock a command's issue time may be.
    pub max_clock_skew_ms: i64,
    /// Longest validity (expires − issued) accepted; bounds how long ids
    /// are remembered.
    pub max_lifetime_ms: i64,
    /// Most ids remembered at once.
    pub max_seen: usize,
    /// Most refusals answered per minute (the rest are only logged).
    pub max_answers_per_min: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_clock_skew_ms: 5_000,
            max_lifetime_ms: 900_000,
            max_seen: 10_000,
            max_answers_per_min: 30,
        }
    }
}

/// Why a command was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("replayed: command {0} was already received; not executed again")]
    Replayed(Uuid),
    #[error("unauthorized: {0}")]
    Auth(#[from] AuthError),
    #[error("expired {late_s} s ago")]
    Expired { late_s: i64 },
    #[error("issued {ahead_s} s in the future, beyond the {skew_s} s clock-skew tolerance: check the clocks")]
    FromTheFuture { ahead_s: i64, skew_s: i64 },
    #[error("valid for {lifetime_s} s, longer than the {max_s} s this drone accepts")]
    LifetimeTooLong { lifetime_s: i64, max_s: i64 },
    #[error("issued before this companion started: the previous run may have executed it; send it again")]
    BeforeStart,
    #[error("too many commands within their validity window ({0} remembered): refused")]
    WindowFull(usize),
}

impl Rejection {
    /// The status of the result that answers it.
    pub fn status(&self) -> CommandStatus {
        match self {
            Rejection::Auth(_) | Rejection::Replayed(_) => CommandStatus::Unauthorized,
            Rejection::Expired { .. } => CommandStatus::Expired,
            _ => CommandStatus::Refused,
        }
    }

    /// Whether a result is sent (not for a replay: see the module doc).
    pub fn answered(&self) -> bool {
        !matches!(self, Rejection::Replayed(_))
    }

    /// A short machine-readable class for logs.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::Replayed(_) => "replayed",
            Rejection::Auth(a) => a.class(),
            Rejection::Expired { .. } => "expired",
            Rejection::FromTheFuture { .. } => "from_the_future",
            Rejection::LifetimeTooLong { .. } => "lifetime_too_long",
            Rejection::BeforeStart => "before_start",
            Rejection::WindowFull(_) => "window_full",
        }
    }
}

#[derive(Debug)]
pub struct CommandGuard {
    keys: TrustedKeys,
    cfg: GuardConfig,
    started_unix_ms: i64,
    /// Accepted id → forget after this time.
    seen: HashMap<Uuid, i64>,
    by_expiry: BTreeSet<(i64, Uuid)>,
    answers: VecDeque<i64>,
}

impl CommandGuard {
    pub fn new(keys: TrustedKeys, cfg: GuardConfig, started_unix_ms: i64) -> Self {
        Self {
            keys,
            cfg,
            started_unix_ms,
            seen: HashMap::new(),
            by_expiry: BTreeSet::new(),
            answers: VecDeque::new(),
        }
    }

    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Ids remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn forget_until(&mut self, now_ms: i64) {
        while let Some(&(t, id)) = self.by_expiry.first() {
            if t >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
    }

    /// Decide on a command from the ground at `now_ms` (our wall clock).
    /// `Ok` carries the id of the key that signed it; the command id is
    /// then remembered.
    pub fn check(&mut self, cmd: &Command, now_ms: i64) -> Result<String, Rejection> {
        self.forget_until(now_ms);
        if self.seen.contains_key(&cmd.command_id) {
            return Err(Rejection::Replayed(cmd.command_id));
        }
        let key = self.keys.verify(cmd)?.to_string();
        let skew = self.cfg.max_clock_skew_ms;
        if now_ms > cmd.expires_unix_ms {
            return Err(Rejection::Expired {
                late_s: (now_ms - cmd.expires_unix_ms + 999) / 1000,
            });
        }
        if cmd.t_unix_ms > now_ms + skew {
            return Err(Rejection::FromTheFuture {
                ahead_s: (cmd.t_unix_ms - now_ms) / 1000,
                skew_s: skew / 1000,
            });
        }
        let lifetime = cmd.expires_unix_ms - cmd.t_unix_ms;
        if lifetime > self.cfg.max_lifetime_ms {
            return Err(Rejection::LifetimeTooLong {
                lifetime_s: lifetime / 1000,
                max_s: self.cfg.max_lifetime_ms / 1000,
            });
        }
        if cmd.t_unix_ms < self.started_unix_ms {
            return Err(Rejection::BeforeStart);
        }
        if self.seen.len() >= self.cfg.max_seen {
            return Err(Rejection::WindowFull(self.seen.len()));
        }
        let forget_after = cmd.expires_unix_ms + skew;
        self.seen.insert(cmd.command_id, forget_after);
        self.by_expiry.insert((forget_after, cmd.command_id));
        Ok(key)
    }

    /// Whether a refusal at `now_ms` may still be answered (rate limit);
    /// counts the answer when it may.
    pub fn may_answer(&mut self, now_ms: i64) -> bool {
        while self.answers.front().is_some_and(|&t| t <= now_ms - 60_000) {
            self.answers.pop_front();
        }
        if self.answers.len() >= self.cfg.max_answers_per_min {
            return false;
        }
        self.answers.push_back(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tiancha_protocol::command_auth::CommandSigner;
    use tiancha_protocol::{CommandKind, DroneId, SCHEMA_VERSION};

    const START: i64 = 1_764_000_000_000;

    fn gs() -> CommandSigner {
        CommandSigner::from_seed(&[42; 32])
    }

    fn guard() -> CommandGuard {
        CommandGuard::new(
            TrustedKeys::new(vec![gs().public_key().clone()]),
            GuardConfig::default(),
            START,
        )
    }

    fn signed(t: i64, life_ms: i64, n: u128) -> Command {
        let mut c = Command {
            schema: SCHEMA_VERSION,
            command_id: Uuid::from_u128(n),
            drone_id: DroneId::new("sr-01").unwrap(),
            issued_by: "op1".into(),
            t_unix_ms: t,
            expires_unix_ms: t + life_ms,
            kind: CommandKind::ReturnToLaunch,
            auth: None,
        };
        let nonce: [u8; 16] = (n as u64).to_le_bytes().repeat(2).try_into().unwrap();
        gs().sign(&mut c, &nonce);
        c
    }

    #[test]
    fn a_genuine_command_passes_once() {
        let mut g = guard();
        let t = START + 60_000;
        let c = signed(t, 30_000, 1);
        assert_eq!(g.check(&c, t + 200), Ok(gs().key_id().to_string()));
        let again = g.check(&c, t + 1_000).unwrap_err();
        assert_eq!(again, Rejection::Replayed(c.command_id));
        assert!(!again.answered());
        assert!(again.to_string().contains("replayed"), "{again}");
    }

    #[test]
    fn expiry_skew_lifetime_and_start_up() {
        let mut g = guard();
        let t = START + 60_000;
        // Expired: arrives 31 s after issue with a 30 s validity.
        let e = g.check(&signed(t, 30_000, 2), t + 31_000).unwrap_err();
        assert_eq!(e, Rejection::Expired { late_s: 1 });
        assert_eq!(e.status(), CommandStatus::Expired);
        // Issued 4 s ahead of our clock: within the 5 s tolerance.
        assert!(g.check(&signed(t + 4_000, 30_000, 3), t).is_ok());
        // 6 s ahead: refused.
        let e = g.check(&signed(t + 6_000, 30_000, 4), t).unwrap_err();
        assert!(
            matches!(
                e,
                Rejection::FromTheFuture {
                    ahead_s: 6,
                    skew_s: 5
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.status(), CommandStatus::Refused);
        // Valid for an hour: longer than the 15 min maximum.
        let e = g.check(&signed(t, 3_600_000, 5), t).unwrap_err();
        assert!(matches!(e, Rejection::LifetimeTooLong { .. }), "{e:?}");
        // Issued before start-up: may have run before a restart.
        let e = g
            .check(&signed(START - 1, 30_000, 6), START + 5_000)
            .unwrap_err();
        assert_eq!(e, Rejection::BeforeStart);
        assert!(e.answered());
        // A refusal does not poison the id: the same id properly signed later
        // is a different command, but the refused one was never remembered.
        assert_eq!(g.remembered(), 1);
    }

    #[test]
    fn bad_signatures_and_missing_keys_are_unauthorized() {
        let t = START + 60_000;
        let mut g = guard();
        let mut c = signed(t, 30_000, 7);
        c.kind = CommandKind::Land; // tampered
        let e = g.check(&c, t).unwrap_err();
        assert!(
            matches!(e, Rejection::Auth(AuthError::BadSignature(_))),
            "{e:?}"
        );
        assert_eq!(e.status(), CommandStatus::Unauthorized);
        let mut none = CommandGuard::new(TrustedKeys::default(), GuardConfig::default(), START);
        let e = none.check(&signed(t, 30_000, 8), t).unwrap_err();
        assert_eq!(e, Rejection::Auth(AuthError::NoKeyConfigured));
        assert!(
            e.to_string()
                .contains("no ground-station command key configured"),
            "{e}"
        );
        // A forgery of a seen id is dropped as a replay, not answered (an
        // answer would attach to the genuine command).
        let genuine = signed(t, 30_000, 9);
        g.check(&genuine, t).unwrap();
        let mut forged = genuine.clone();
        forged.kind = CommandKind::Land;
        assert_eq!(
            g.check(&forged, t).unwrap_err(),
            Rejection::Replayed(genuine.command_id)
        );
    }

    #[test]
    fn ids_are_forgotten_after_their_window_and_memory_is_bounded() {
        let mut g = CommandGuard::new(
            TrustedKeys::new(vec![gs().public_key().clone()]),
            GuardConfig {
                max_seen: 3,
                ..GuardConfig::default()
            },
            START,
        );
        let t = START + 60_000;
        for n in 0..3 {
            g.check(&signed(t, 10_000, 100 + n), t).unwrap();
        }
        assert_eq!(
            g.check(&signed(t, 10_000, 200), t).unwrap_err(),
            Rejection::WindowFull(3)
        );
        // After expiry + skew the ids are forgotten (and a replay of one
        // is refused as expired).
        let later = t + 10_000 + 5_001;
        assert_eq!(
            g.check(&signed(t, 10_000, 100), later).unwrap_err(),
            Rejection::Expired { late_s: 6 }
        );
        assert_eq!(g.remembered(), 0);
        assert!(g.check(&signed(later, 10_000, 201), later).is_ok());
    }

    #[test]
    fn answers_to_refusals_are_rate_limited() {
        let mut g = guard();
        let t = START;
        for _ in 0..30 {
            assert!(g.may_answer(t));
        }
        assert!(!g.may_answer(t + 59_000));
        assert!(g.may_answer(t + 60_000));
    }

    proptest! {
        /// Whatever the order and timing of deliveries, a command id is
        /// accepted at most once, only within its validity, and the
        /// memory never holds an id past its expiry plus the skew.
        #[test]
        fn each_id_executes_at_most_once(deliveries in proptest::collection::vec((0u128..20, 0i64..120_000), 1..200)) {
            let mut g = guard();
            let t0 = START + 10_000;
            let mut accepted = std::collections::HashSet::new();
            let mut now = t0;
            for (n, dt) in deliveries {
                now += dt / 50;
                let c = signed(t0 + (n as i64) * 1_000, 30_000, n);
                if g.check(&c, now).is_ok() {
                    prop_assert!(accepted.insert(n), "id {} accepted twice", n);
                    prop_assert!(now <= c.expires_unix_ms);
                }
                prop_assert!(g.seen.values().all(|&f| f >= now));
                prop_assert_eq!(g.seen.len(), g.by_expiry.len());
            }
        }
    }
}
