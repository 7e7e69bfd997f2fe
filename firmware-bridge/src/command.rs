//! The command microservice, sans-IO (<https://mavlink.io/en/services/command.html>).
//!
//! [`CommandClient`] sends `COMMAND_LONG` / `COMMAND_INT`, resends on timeout
//! (raising `COMMAND_LONG.confirmation` each time), matches `COMMAND_ACK` by
//! command id, keeps waiting while the autopilot says `IN_PROGRESS`, and
//! returns a typed result. MAVLink matches acknowledgements by command id
//! only, so two commands with the same id are never in flight together: the
//! second waits in a queue. An ACK for a command not in flight is counted
//! and ignored.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::{dialect, Msg};

/// Timeouts and retries of the command service.
#[derive(Debug, Clone, Serialize)]
pub struct CommandConfig {
    /// Wait this long for an ACK before resending.
    pub timeout: Duration,
    /// Resends after the first attempt.
    pub retries: u32,
    /// After an IN_PROGRESS, wait this long for the next ACK.
    pub in_progress_timeout: Duration,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1000),
            retries: 4,
            in_progress_timeout: Duration::from_secs(30),
        }
    }
}

/// A command to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// COMMAND_LONG: seven float parameters.
    Long {
        command: dialect::MavCmd,
        params: [f32; 7],
    },
    /// COMMAND_INT: four float parameters and an integer position.
    Int {
        command: dialect::MavCmd,
        frame: dialect::MavFrame,
        params: [f32; 4],
        x: i32,
        y: i32,
        z: f32,
    },
}

impl Command {
    pub fn long(command: dialect::MavCmd, params: [f32; 7]) -> Self {
        Self::Long { command, params }
    }

    pub fn id(&self) -> dialect::MavCmd {
        match self {
            Command::Long { command, .. } | Command::Int { command, .. } => *command,
        }
    }

    fn to_msg(&self, target_system: u8, target_component: u8, confirmation: u8) -> Msg {
        match *self {
            Command::Long { command, params } => Msg::COMMAND_LONG(dialect::COMMAND_LONG_DATA {
                param1: params[0],
                param2: params[1],
                param3: params[2],
                param4: params[3],
                param5: params[4],
                param6: params[5],
                param7: params[6],
                command,
                target_system,
                target_component,
                confirmation,
            }),
            Command::Int {
                command,
                frame,
                params,
                x,
                y,
                z,
            } => Msg::COMMAND_INT(dialect::COMMAND_INT_DATA {
                param1: params[0],
                param2: params[1],
                param3: params[2],
                param4: params[3],
                x,
                y,
                z,
                command,
                target_system,
                target_component,
                frame,
                current: 0,
                autocontinue: 0,
            }),
        }
    }
}

/// A successful command: `MAV_RESULT_ACCEPTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CommandOk {
    pub result_param2: i32,
    /// How many times it was sent.
    pub attempts: u32,
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum CommandError {
    #[error("{command}: temporarily rejected (try again later)")]
    TemporarilyRejected { command: u16 },
    #[error("{command}: denied (invalid parameters or not allowed now)")]
    Denied { command: u16 },
    #[error("{command}: not supported by the autopilot")]
    Unsupported { command: u16 },
    #[error("{command}: failed")]
    Failed { command: u16 },
    #[error("{command}: cancelled")]
    Cancelled { command: u16 },
    #[error("{command}: only accepted as COMMAND_LONG")]
    LongOnly { command: u16 },
    #[error("{command}: only accepted as COMMAND_INT")]
    IntOnly { command: u16 },
    #[error("{command}: frame not supported")]
    UnsupportedFrame { command: u16 },
    #[error("{command}: unknown result code {code}")]
    UnknownResult { command: u16, code: u8 },
    #[error("{command}: no COMMAND_ACK after {attempts} attempts")]
    Timeout { command: u16, attempts: u32 },
    #[error("no autopilot found yet (no heartbeat)")]
    NoAutopilot,
    #[error("{0}")]
    Invalid(String),
    #[error("the bridge has stopped")]
    BridgeStopped,
}

/// Identifies a submitted command (assigned by the caller).
pub type CommandId = u64;

#[derive(Debug)]
struct InFlight {
    id: CommandId,
    cmd: Command,
    first_sent: Instant,
    attempts: u32,
    deadline: Instant,
    in_progress: bool,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommandStats {
    pub sent: u64,
    pub retransmissions: u64,
    pub acked: u64,
    pub timeouts: u64,
    pub unexpected_acks: u64,
}

/// The command service. See the module docs.
#[derive(Debug)]
pub struct CommandClient {
    cfg: CommandConfig,
    target_system: u8,
    target_component: u8,
    in_flight: HashMap<u32, InFlight>,
    queue: VecDeque<(CommandId, Command)>,
    out: VecDeque<Msg>,
    results: VecDeque<(CommandId, Result<CommandOk, CommandError>)>,
    progress: VecDeque<(u16, Option<u8>)>,
    rtt: Option<Duration>,
    pub stats: CommandStats,
}

impl CommandClient {
    pub fn new(cfg: CommandConfig) -> Self {
        Self {
            cfg,
            target_system: 1,
            target_component: 1,
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            out: VecDeque::new(),
            results: VecDeque::new(),
            progress: VecDeque::new(),
            rtt: None,
            stats: CommandStats::default(),
        }
    }

    pub fn set_target(&mut self, system: u8, component: u8) {
        self.target_system = system;
        self.target_component = component;
    }

    /// Submit a command; its result comes out of
    /// [`poll_result`](Self::poll_result) with the same id.
    pub fn submit(&mut self, id: CommandId, cmd: Command, now: Instant) {
        let key = cmd.id() as u32;
        if self.in_flight.contains_key(&key) {
            self.queue.push_back((id, cmd));
            return;
        }
        self.send_new(id, cmd, now);
    }

    fn send_new(&mut self, id: CommandId, cmd: Command, now: Instant) {
        let key = cmd.id() as u32;
        self.out
            .push_back(cmd.to_msg(self.target_system, self.target_component, 0));
        self.stats.sent += 1;
        self.in_flight.insert(
            key,
            InFlight {
                id,
                cmd,
                first_sent: now,
                attempts: 1,
                deadline: now + self.cfg.timeout,
                in_progress: false,
            },
        );
    }

    /// Give up on every command (e.g. the link is closing).
    pub fn fail_all(&mut self, e: CommandError) {
        for (_, f) in self.in_flight.drain() {
            self.results.push_back((f.id, Err(e.clone())));
        }
        for (id, _) in self.queue.drain(..) {
            self.results.push_back((id, Err(e.clone())));
        }
    }

    /// Feed a COMMAND_ACK already known to come from the target and be
    /// addressed to us. Returns false if it matched nothing.
    pub fn handle_ack(&mut self, ack: &dialect::COMMAND_ACK_DATA, now: Instant) -> bool {
        use dialect::MavResult::*;
        let key = ack.command as u32;
        let Some(f) = self.in_flight.get_mut(&key) else {
            self.stats.unexpected_acks += 1;
            return false;
        };
        let command = key as u16;
        let res = match ack.result {
            MAV_RESULT_IN_PROGRESS => {
                f.in_progress = true;
                f.deadline = now + self.cfg.in_progress_timeout;
                let p = (ack.progress <= 100).then_some(ack.progress);
                self.progress.push_back((command, p));
                return true;
            }
            MAV_RESULT_ACCEPTED => Ok(CommandOk {
                result_param2: ack.result_param2,
                attempts: f.attempts,
            }),
            MAV_RESULT_TEMPORARILY_REJECTED => Err(CommandError::TemporarilyRejected { command }),
            MAV_RESULT_DENIED => Err(CommandError::Denied { command }),
            MAV_RESULT_UNSUPPORTED => Err(CommandError::Unsupported { command }),
            MAV_RESULT_FAILED => Err(CommandError::Failed { command }),
            MAV_RESULT_CANCELLED => Err(CommandError::Cancelled { command }),
            MAV_RESULT_COMMAND_LONG_ONLY => Err(CommandError::LongOnly { command }),
            MAV_RESULT_COMMAND_INT_ONLY => Err(CommandError::IntOnly { command }),
            MAV_RESULT_COMMAND_UNSUPPORTED_MAV_FRAME => {
                Err(CommandError::UnsupportedFrame { command })
            }
            #[allow(unreachable_patterns)]
            other => Err(CommandError::UnknownResult {
                command,
                code: other as u8,
            }),
        };
        let f = self.in_flight.remove(&key).expect("present");
        self.stats.acked += 1;
        if f.attempts == 1 && ack.result != MAV_RESULT_IN_PROGRESS {
            // Karn: only unambiguous round trips.
            self.rtt = Some(now.saturating_duration_since(f.first_sent));
        }
        self.results.push_back((f.id, res));
        self.start_queued(key, now);
        true
    }

    fn start_queued(&mut self, key: u32, now: Instant) {
        if let Some(pos) = self.queue.iter().position(|(_, c)| c.id() as u32 == key) {
            let (id, cmd) = self.queue.remove(pos).expect("position valid");
            self.send_new(id, cmd, now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.values().map(|f| f.deadline).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let f = self.in_flight.get_mut(&key).expect("present");
            if !f.in_progress && f.attempts <= self.cfg.retries {
                let msg = f.cmd.to_msg(
                    self.target_system,
                    self.target_component,
                    f.attempts.min(255) as u8,
                );
                f.attempts += 1;
                f.deadline = now + self.cfg.timeout;
                self.out.push_back(msg);
                self.stats.retransmissions += 1;
                continue;
            }
            let f = self.in_flight.remove(&key).expect("present");
            self.stats.timeouts += 1;
            self.results.push_back((
                f.id,
                Err(CommandError::Timeout {
                    command: key as u16,
                    attempts: f.attempts,
                }),
            ));
            self.start_queued(key, now);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.out.pop_front()
    }

    pub fn poll_result(&mut self) -> Option<(CommandId, Result<CommandOk, CommandError>)> {
        self.results.pop_front()
    }

    /// The latest unambiguous command round trip, once.
    pub fn take_rtt_sample(&mut self) -> Option<Duration> {
        self.rtt.take()
    }

    /// IN_PROGRESS reports: (command id, percent if given).
    pub fn poll_progress(&mut self) -> Option<(u16, Option<u8>)> {
        self.progress.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::{MavCmd, MavResult};

    fn ack(command: MavCmd, result: MavResult, progress: u8) -> dialect::COMMAND_ACK_DATA {
        dialect::COMMAND_ACK_DATA {
            command,
            result,
            progress,
            result_param2: 0,
            target_system: 1,
            target_component: 191,
        }
    }

    fn arm() -> Command {
        Command::long(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0., 0., 0., 0., 0., 0.],
        )
    }

    #[test]
    fn retries_with_rising_confirmation_then_times_out() {
        let t0 = Instant::now();
        let mut c = CommandClient::new(CommandConfig {
            timeout: Duration::from_millis(100),
            retries: 2,
            ..Default::default()
        });
        c.submit(7, arm(), t0);
        let mut confirmations = vec![];
        for _ in 0..10 {
            while let Some(Msg::COMMAND_LONG(m)) = c.poll_transmit() {
                confirmations.push(m.confirmation);
            }
            if let Some(r) = c.poll_result() {
                assert_eq!(
                    r,
                    (
                        7,
                        Err(CommandError::Timeout {
                            command: 400,
                            attempts: 3
                        })
                    )
                );
                assert_eq!(confirmations, vec![0, 1, 2]);
                return;
            }
            let now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
        }
        panic!("no timeout result");
    }

    #[test]
    fn in_progress_extends_the_wait_and_reports_progress() {
        let t0 = Instant::now();
        let mut c = CommandClient::new(CommandConfig {
            timeout: Duration::from_millis(100),
            retries: 1,
            in_progress_timeout: Duration::from_secs(5),
        });
        c.submit(1, arm(), t0);
        assert!(c.handle_ack(
            &ack(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                MavResult::MAV_RESULT_IN_PROGRESS,
                40
            ),
            t0
        ));
        assert_eq!(c.poll_progress(), Some((400, Some(40))));
        // Past the normal timeout, no resend.
        c.handle_timeout(t0 + Duration::from_secs(1));
        c.poll_transmit();
        assert!(c.poll_transmit().is_none());
        assert!(c.poll_result().is_none());
        c.handle_ack(
            &ack(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                MavResult::MAV_RESULT_ACCEPTED,
                0,
            ),
            t0 + Duration::from_secs(2),
        );
        assert!(matches!(c.poll_result(), Some((1, Ok(_)))));
    }

    #[test]
    fn unexpected_acks_are_counted_and_change_nothing() {
        let t0 = Instant::now();
        let mut c = CommandClient::new(CommandConfig::default());
        assert!(!c.handle_ack(
            &ack(MavCmd::MAV_CMD_NAV_LAND, MavResult::MAV_RESULT_ACCEPTED, 0),
            t0
        ));
        assert_eq!(c.stats.unexpected_acks, 1);
        c.submit(3, arm(), t0);
        assert!(!c.handle_ack(
            &ack(MavCmd::MAV_CMD_NAV_LAND, MavResult::MAV_RESULT_DENIED, 0),
            t0
        ));
        assert!(c.poll_result().is_none());
        c.handle_ack(
            &ack(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                MavResult::MAV_RESULT_DENIED,
                0,
            ),
            t0,
        );
        assert_eq!(
            c.poll_result(),
            Some((3, Err(CommandError::Denied { command: 400 })))
        );
    }

    #[test]
    fn same_command_id_is_serialised() {
        let t0 = Instant::now();
        let mut c = CommandClient::new(CommandConfig::default());
        c.submit(1, arm(), t0);
        c.submit(2, arm(), t0);
        assert!(c.poll_transmit().is_some());
        assert!(c.poll_transmit().is_none(), "second waits for the first");
        c.handle_ack(
            &ack(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                MavResult::MAV_RESULT_ACCEPTED,
                0,
            ),
            t0,
        );
        assert!(matches!(c.poll_result(), Some((1, Ok(_)))));
        assert!(c.poll_transmit().is_some(), "now the second goes");
    }
}
