//! One device on a bus: identification, decoded values, presence and timeouts.
//!
//! This is pure bookkeeping, no I/O: the bus runner asks it what to send
//! ([`Device::next_probe`]) and tells it what came back
//! ([`Device::probe_result`], [`Device::block_read`], [`Device::failed`]).
//! The presence rules of the issue live here so they are unit-tested with a
//! simulated clock:
//! - a device is *not answering* after [`FAILURES_BEFORE_OFFLINE`] consecutive
//!   failed transactions, and is then retried with exponential back-off from
//!   1 s up to [`MAX_BACKOFF`], so it costs at most one timeout per back-off
//!   period and the other devices get the line;
//! - a device that answers again is back at once, and its values count as
//!   fresh only from that successful read on;
//! - the response timeout follows the measured latency:
//!   `max(min, 4 x filtered turnaround)` clamped to the bounds below.

use dmc_core::plan::{Block, Plan, Transport};
use dmc_core::profile::{self, ProbeVerdict, Profile, MAX_BLOCKS};
use dmc_core::register::{PollClass, RegisterBank};
use dmc_core::time::{Duration, Instant};
use dmc_core::value::Value;

use crate::spec::DeviceSpec;

/// Consecutive failures before a device counts as not answering.
pub const FAILURES_BEFORE_OFFLINE: u32 = 3;
/// First retry delay once a device is not answering.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay (a sleeping inverter is asked once a minute).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Smallest response timeout on a serial line (beyond the response's own wire time).
pub const MIN_TIMEOUT_SERIAL: Duration = Duration::from_millis(100);
/// Smallest response timeout over a network.
pub const MIN_TIMEOUT_NETWORK: Duration = Duration::from_millis(300);
/// Largest response timeout: a slow device never holds the line longer.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(1000);
/// Timeout before anything was measured (identification).
pub const INITIAL_TIMEOUT: Duration = Duration::from_millis(300);

/// Where the device stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Not identified yet (or being re-identified).
    Probing,
    /// Identified; identity registers still being read.
    Identifying,
    /// Answering; values are live.
    Online,
    /// Not answering since `since`; next attempt at `retry_at`.
    NotAnswering {
        /// When the last success was (or when probing started).
        since: Instant,
        /// Next attempt.
        retry_at: Instant,
        /// Current back-off step.
        backoff: Duration,
    },
}

/// Per-device statistics, published on the control service.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeviceStats {
    /// Transactions started.
    pub requests: u64,
    /// Valid responses.
    pub responses: u64,
    /// Transactions without an answer.
    pub timeouts: u64,
    /// Frames dropped for a bad CRC/LRC while this device's answer was awaited.
    pub crc_errors: u64,
    /// Exception responses.
    pub exceptions: u64,
    /// Malformed responses.
    pub protocol_errors: u64,
    /// Last measured turnaround (end of request to complete response, minus its wire time).
    pub latency_last: Duration,
    /// Filtered turnaround.
    pub latency_filtered: Duration,
    /// Largest turnaround seen.
    pub latency_max: Duration,
}

/// How a transaction for this device ended, as far as presence is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No (valid) answer before the deadline.
    Timeout,
    /// The device answered with an exception.
    Exception,
    /// The answer was malformed.
    Protocol,
}

/// A presence change worth one log line and a D-Bus action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// Identified as a profile (first time or after a re-probe).
    Identified,
    /// All identity registers read: ready to publish.
    Ready,
    /// Stopped answering.
    Lost,
    /// Answering again after being lost.
    Returned,
}

/// Probing progress: which profile (the `tried`-th after the preferred one),
/// which of its probe reads, what came back.
#[derive(Clone, Debug, Default)]
struct Probe {
    tried: usize,
    results: Vec<Option<Vec<u16>>>,
}

/// A device and everything known about it.
pub struct Device {
    /// How it is reached.
    pub spec: DeviceSpec,
    /// The profile once identified (or forced by the spec).
    pub profile: Option<&'static Profile>,
    /// Read blocks of the profile for this transport.
    pub plan: Option<Plan<MAX_BLOCKS>>,
    /// Decoded value per profile register (index = position in `profile.registers`).
    pub values: Vec<Value>,
    /// Whether each value was read since the device was last (re)found.
    pub fresh: Vec<bool>,
    /// Where the device stands.
    pub presence: Presence,
    /// Counters and latency.
    pub stats: DeviceStats,
    /// Whether a forced profile skips identification.
    forced: bool,
    probe: Probe,
    /// Index in `profile::ALL` asked first: the profile whose default unit is
    /// this spec's unit (a Growatt on 1, an SDM230 on 2 are found at once).
    preferred: usize,
    failures: u32,
    /// Blocks of class `Once` not read yet (identity).
    pending_once: Vec<bool>,
    min_timeout: Duration,
    /// Last success, for the time-without-update rules of the D-Bus layer.
    pub last_success: Option<Instant>,
    /// Registers whose value changed in the last block read (reused buffer).
    pub changed: Vec<usize>,
}

/// Turnaround filter weight: new = old + (sample - old) / 8.
const FILTER_SHIFT: u64 = 3;

impl Device {
    /// A device from its spec; an unknown profile name is an error for the caller.
    pub fn new(spec: DeviceSpec, now: Instant) -> Result<Device, String> {
        let forced = match &spec.profile {
            Some(name) => Some(profile::by_name(name).ok_or_else(|| {
                let known: Vec<&str> = profile::ALL.iter().map(|p| p.name).collect();
                format!("{spec}: unknown profile '{name}' (known: {})", known.join(", "))
            })?),
            None => None,
        };
        let network = !spec.method.is_serial();
        let mut dev = Device {
            spec,
            profile: None,
            plan: None,
            values: Vec::new(),
            fresh: Vec::new(),
            presence: Presence::Probing,
            stats: DeviceStats::default(),
            forced: forced.is_some(),
            probe: Probe::default(),
            preferred: 0,
            failures: 0,
            pending_once: Vec::new(),
            min_timeout: if network { MIN_TIMEOUT_NETWORK } else { MIN_TIMEOUT_SERIAL },
            last_success: None,
            changed: Vec::new(),
        };
        let _ = now;
        dev.preferred = profile::ALL.iter().position(|p| p.default_unit == dev.spec.unit).unwrap_or(0);
        if let Some(p) = forced {
            dev.presence = Presence::Identifying;
            dev.profile = Some(p);
        }
        Ok(dev)
    }

    /// Builds the plan for `transport` once the profile is known.
    pub fn prepare(&mut self, transport: &Transport) -> Result<(), String> {
        let Some(profile) = self.profile else { return Ok(()) };
        let plan = profile
            .plan::<MAX_BLOCKS>(transport)
            .map_err(|e| format!("{}: cannot plan reads for {}: {e}", self.spec, profile.name))?;
        self.pending_once = plan.blocks().iter().map(|b| b.class == PollClass::Once).collect();
        self.values = vec![Value::Invalid; profile.registers.len()];
        self.fresh = vec![false; profile.registers.len()];
        self.plan = Some(plan);
        Ok(())
    }

    /// The response timeout to use now (beyond the response's wire time).
    pub fn timeout(&self) -> Duration {
        if self.stats.responses == 0 {
            return INITIAL_TIMEOUT.max(self.min_timeout);
        }
        self.stats.latency_filtered.saturating_mul(4).max(self.min_timeout).min(MAX_TIMEOUT)
    }

    /// The turnaround this device has shown (filtered), once it is known well
    /// enough to plan reads around it.
    pub fn expected_turnaround(&self) -> Option<Duration> {
        (self.stats.responses >= 4).then_some(self.stats.latency_filtered)
    }

    /// The next identification read, while probing: (bank, address, count).
    pub fn next_probe(&self) -> Option<(RegisterBank, u16, u16)> {
        if self.presence != Presence::Probing && !matches!(self.presence, Presence::NotAnswering { .. })
            || self.profile.is_some()
        {
            return None;
        }
        let p = self.probing_profile()?;
        let read = p.probe.get(self.probe.results.len())?;
        Some((read.bank, read.address, read.count))
    }

    /// Records the answer to the probe read from [`next_probe`](Self::next_probe):
    /// `Some(words)`, or `None` for an exception. Returns `Identified` on a match.
    pub fn probe_result(&mut self, words: Option<&[u16]>, now: Instant) -> Option<PresenceChange> {
        self.note_success(now);
        let p = self.probing_profile()?;
        self.probe.results.push(words.map(<[u16]>::to_vec));
        let results: Vec<Option<&[u16]>> = self.probe.results.iter().map(|r| r.as_deref()).collect();
        match (p.judge)(&results) {
            ProbeVerdict::Match => {
                self.profile = Some(p);
                self.presence = Presence::Identifying;
                self.probe = Probe::default();
                Some(PresenceChange::Identified)
            }
            ProbeVerdict::NeedMore if self.probe.results.len() < p.probe.len() => None,
            ProbeVerdict::NeedMore | ProbeVerdict::NoMatch => {
                self.probe = Probe { tried: self.probe.tried + 1, results: Vec::new() };
                if self.probe.tried >= profile::ALL.len() {
                    // Nothing matched: an unknown device. Start over after a pause,
                    // as if it did not answer (it may be mid-boot).
                    self.probe = Probe::default();
                    self.enter_backoff(now);
                }
                None
            }
        }
    }

    /// The profile whose probe reads are under way.
    fn probing_profile(&self) -> Option<&'static Profile> {
        if self.probe.tried >= profile::ALL.len() {
            return None;
        }
        profile::ALL.get((self.preferred + self.probe.tried) % profile::ALL.len()).copied()
    }

    /// True when the device answers but matched no profile in the last round.
    pub fn unidentified(&self) -> bool {
        self.profile.is_none() && matches!(self.presence, Presence::NotAnswering { .. }) && self.failures == 0
    }

    /// Records a successful read of `block`: decodes its registers into
    /// [`values`](Self::values) and lists the changed ones in [`changed`](Self::changed).
    pub fn block_read(&mut self, block: usize, words: &[u16], now: Instant) -> Option<PresenceChange> {
        let change = self.note_success(now);
        self.changed.clear();
        let (Some(profile), Some(plan)) = (self.profile, self.plan.as_ref()) else {
            return change;
        };
        let Some(b) = plan.blocks().get(block).copied() else { return change };
        for idx in plan.registers_of(block) {
            let Some(def) = profile.registers.get(idx) else { continue };
            let value = def.decode_in_block(b.start, words);
            let (Some(slot), Some(fresh)) = (self.values.get_mut(idx), self.fresh.get_mut(idx)) else {
                continue;
            };
            if *slot != value || !*fresh {
                *slot = value;
                self.changed.push(idx);
            }
            *fresh = true;
        }
        if let Some(p) = self.pending_once.get_mut(block) {
            *p = false;
        }
        if self.presence == Presence::Identifying && !self.pending_once.iter().any(|&p| p) {
            self.presence = Presence::Online;
            return Some(PresenceChange::Ready);
        }
        change
    }

    /// Records that the device refused `block` with an exception: its values
    /// become invalid (they are not available), and an identity block counts
    /// as done so a device without, say, a firmware register still comes up.
    pub fn block_unreadable(&mut self, block: usize, _now: Instant) {
        self.changed.clear();
        let Some(plan) = self.plan.as_ref() else { return };
        for idx in plan.registers_of(block) {
            if let Some(slot) = self.values.get_mut(idx) {
                if *slot != Value::Invalid {
                    *slot = Value::Invalid;
                    self.changed.push(idx);
                }
            }
        }
        if let Some(p) = self.pending_once.get_mut(block) {
            *p = false;
        }
    }

    /// Measured turnaround of a successful transaction.
    pub fn record_latency(&mut self, sample: Duration) {
        let s = &mut self.stats;
        s.latency_last = sample;
        s.latency_max = s.latency_max.max(sample);
        s.latency_filtered = if s.responses <= 1 {
            sample
        } else {
            let old = s.latency_filtered.as_micros() as i64;
            let new = old + ((sample.as_micros() as i64 - old) >> FILTER_SHIFT);
            Duration::from_micros(new.max(0) as u64)
        };
    }

    fn note_success(&mut self, now: Instant) -> Option<PresenceChange> {
        self.stats.responses += 1;
        self.mark_alive(now)
    }

    /// The device answered (possibly with an exception): it is present.
    fn mark_alive(&mut self, now: Instant) -> Option<PresenceChange> {
        self.failures = 0;
        self.last_success = Some(now);
        if let Presence::NotAnswering { .. } = self.presence {
            self.presence = if self.profile.is_none() {
                Presence::Probing
            } else if self.pending_once.iter().any(|&p| p) {
                Presence::Identifying
            } else {
                Presence::Online
            };
            // Values count as fresh again only once re-read.
            self.fresh.iter_mut().for_each(|f| *f = false);
            return Some(PresenceChange::Returned);
        }
        None
    }

    /// Records a failed transaction; returns `Lost` when this one tips the
    /// device into "not answering".
    pub fn failed(&mut self, why: Failure, now: Instant) -> Option<PresenceChange> {
        match why {
            Failure::Timeout => self.stats.timeouts += 1,
            Failure::Exception => self.stats.exceptions += 1,
            Failure::Protocol => self.stats.protocol_errors += 1,
        }
        if why == Failure::Exception {
            // It answered: present, just refusing that request.
            return self.mark_alive(now);
        }
        self.failures = self.failures.saturating_add(1);
        match self.presence {
            Presence::NotAnswering { .. } => {
                self.enter_backoff(now);
                None
            }
            Presence::Probing if self.profile.is_none() => {
                // A silent address while probing: back off right away so a
                // missing unit costs one timeout per back-off period.
                self.probe = Probe::default();
                self.enter_backoff(now);
                Some(PresenceChange::Lost)
            }
            _ if self.failures >= FAILURES_BEFORE_OFFLINE => {
                self.enter_backoff(now);
                Some(PresenceChange::Lost)
            }
            _ => None,
        }
    }

    fn enter_backoff(&mut self, now: Instant) {
        let (since, backoff) = match self.presence {
            Presence::NotAnswering { since, backoff, .. } => {
                (since, backoff.saturating_mul(2).min(MAX_BACKOFF))
            }
            _ => (self.last_success.unwrap_or(now), FIRST_BACKOFF),
        };
        self.presence = Presence::NotAnswering { since, retry_at: now + backoff, backoff };
    }

    /// When the device may next be addressed (`None`: any time).
    pub fn not_before(&self) -> Option<Instant> {
        match self.presence {
            Presence::NotAnswering { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }

    /// Forces an immediate retry (the port came back, a scan was asked for).
    pub fn retry_now(&mut self, now: Instant) {
        if let Presence::NotAnswering { since, backoff, .. } = self.presence {
            self.presence = Presence::NotAnswering { since, retry_at: now, backoff };
        }
    }

    /// True once values may be published.
    pub fn is_ready(&self) -> bool {
        self.profile.is_some() && !self.pending_once.iter().any(|&p| p) && self.plan.is_some()
    }

    /// The block list, empty before identification.
    pub fn blocks(&self) -> &[Block] {
        self.plan.as_ref().map(|p| p.blocks()).unwrap_or(&[])
    }

    /// Whether identification was skipped by a profile in the spec.
    pub fn is_forced(&self) -> bool {
        self.forced
    }

    /// The decoded value of the register publishing `path`.
    pub fn value_of(&self, path: &str) -> Option<&Value> {
        let (idx, _) = self.profile?.register_for_path(path)?;
        self.values.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::timing::LineConfig;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn spec(s: &str) -> DeviceSpec {
        DeviceSpec::parse(s).unwrap()
    }

    fn sdm230_probe_words() -> (Vec<u16>, Vec<u16>) {
        let v = 230.1f32.to_bits();
        (vec![(v >> 16) as u16, v as u16], vec![0x7147, 0x8B60])
    }

    #[test]
    fn identifies_sdm230_from_probe_reads() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:2"), t(0)).unwrap();
        let (volts, serial) = sdm230_probe_words();
        // The first profile in the table is asked first.
        assert_eq!(d.next_probe(), Some((RegisterBank::Input, 0, 2)));
        assert_eq!(d.probe_result(Some(&volts), t(10)), None);
        assert_eq!(d.next_probe(), Some((RegisterBank::Holding, 0xFC00, 2)));
        assert_eq!(d.probe_result(Some(&serial), t(20)), Some(PresenceChange::Identified));
        assert_eq!(d.profile.map(|p| p.name), Some("sdm230"));
        assert_eq!(d.presence, Presence::Identifying);
        d.prepare(&Transport::Rtu(LineConfig::new_8n1(9600))).unwrap();
        assert!(!d.is_ready(), "identity blocks still to read");
    }

    #[test]
    fn ready_after_all_once_blocks_then_values_change() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:2:sdm230"), t(0)).unwrap();
        assert!(d.is_forced());
        d.prepare(&Transport::Rtu(LineConfig::new_8n1(9600))).unwrap();
        let blocks: Vec<Block> = d.blocks().to_vec();
        let mut ready = None;
        for (i, b) in blocks.iter().enumerate() {
            let words = vec![0u16; usize::from(b.count)];
            if let Some(c) = d.block_read(i, &words, t(100 + i as u64)) {
                ready = Some(c);
            }
        }
        assert_eq!(ready, Some(PresenceChange::Ready));
        assert_eq!(d.presence, Presence::Online);
        // Re-reading identical words changes nothing.
        let vi = blocks.iter().position(|b| b.start == 0).expect("the block holding the voltage");
        let words = vec![0u16; usize::from(blocks[vi].count)];
        d.block_read(vi, &words, t(500));
        assert!(d.changed.is_empty());
        // A new voltage is reported as changed.
        let mut words = words;
        let (v, _) = sdm230_probe_words();
        words[0] = v[0];
        words[1] = v[1];
        d.block_read(vi, &words, t(600));
        assert!(!d.changed.is_empty());
        let volts = d.value_of("/Ac/L1/Voltage").and_then(Value::as_f64).unwrap();
        assert!((volts - 230.1).abs() < 1e-3, "{volts}");
    }

    #[test]
    fn lost_after_three_failures_then_backoff_doubles_to_a_minute() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:1:growatt_min"), t(0)).unwrap();
        d.prepare(&Transport::Rtu(LineConfig::new_8n1(9600))).unwrap();
        assert_eq!(d.failed(Failure::Timeout, t(100)), None);
        assert_eq!(d.failed(Failure::Timeout, t(200)), None);
        assert_eq!(d.failed(Failure::Timeout, t(300)), Some(PresenceChange::Lost));
        assert_eq!(d.not_before(), Some(t(1300)));
        let mut now = 1300;
        let mut last = 1000;
        for _ in 0..10 {
            assert_eq!(d.failed(Failure::Timeout, t(now)), None, "Lost is reported once");
            let Presence::NotAnswering { backoff, retry_at, .. } = d.presence else { panic!() };
            assert!(backoff.as_millis() >= last && backoff <= MAX_BACKOFF);
            last = backoff.as_millis();
            now = retry_at.as_millis();
        }
        assert_eq!(last, MAX_BACKOFF.as_millis());
        // It answers again: back at once, values stale until re-read.
        let blocks = d.blocks().to_vec();
        let words = vec![0u16; usize::from(blocks[0].count)];
        assert_eq!(d.block_read(0, &words, t(now)), Some(PresenceChange::Returned));
        assert_eq!(d.not_before(), None);
    }

    #[test]
    fn exceptions_mean_present() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:1:growatt_min"), t(0)).unwrap();
        for i in 0..10 {
            assert_eq!(d.failed(Failure::Exception, t(i)), None);
        }
        assert_eq!(d.stats.exceptions, 10);
        assert_eq!(d.stats.responses, 0);
        assert_eq!(d.not_before(), None);
    }

    #[test]
    fn the_profile_of_the_units_default_is_asked_first() {
        let d = Device::new(spec("rtu:ttyUSB0:9600:1"), t(0)).unwrap();
        // Unit 1 is the Growatt's default: its device type code is read first.
        assert_eq!(d.next_probe(), Some((RegisterBank::Holding, 43, 2)));
    }

    #[test]
    fn silent_unit_while_probing_backs_off_at_once() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:5"), t(0)).unwrap();
        assert_eq!(d.failed(Failure::Timeout, t(300)), Some(PresenceChange::Lost));
        assert_eq!(d.not_before(), Some(t(1300)));
        // Still probing, from the first profile again.
        assert_eq!(d.next_probe(), Some((RegisterBank::Input, 0, 2)));
    }

    #[test]
    fn no_profile_matches_then_pause() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:7"), t(0)).unwrap();
        // Every probe read answered with an exception.
        let mut rounds = 0;
        while d.next_probe().is_some() && d.not_before().is_none() {
            d.probe_result(None, t(10));
            rounds += 1;
            assert!(rounds < 20);
        }
        assert!(d.unidentified());
        assert!(d.not_before().is_some());
    }

    #[test]
    fn timeout_follows_latency_within_bounds() {
        let mut d = Device::new(spec("rtu:ttyUSB0:9600:2:sdm230"), t(0)).unwrap();
        assert_eq!(d.timeout(), INITIAL_TIMEOUT);
        for _ in 0..50 {
            d.stats.responses += 1;
            d.record_latency(Duration::from_millis(10));
        }
        assert_eq!(d.timeout(), MIN_TIMEOUT_SERIAL);
        for _ in 0..100 {
            d.stats.responses += 1;
            d.record_latency(Duration::from_millis(60));
        }
        let t = d.timeout().as_millis();
        assert!((230..=241).contains(&t), "{t}");
        for _ in 0..100 {
            d.stats.responses += 1;
            d.record_latency(Duration::from_secs(2));
        }
        assert_eq!(d.timeout(), MAX_TIMEOUT);
    }

    #[test]
    fn unknown_forced_profile_is_a_clear_error() {
        let err = Device::new(spec("rtu:ttyUSB0:9600:2:sdm630"), t(0)).err().unwrap();
        assert!(err.contains("unknown profile 'sdm630'") && err.contains("sdm230"), "{err}");
    }
}
