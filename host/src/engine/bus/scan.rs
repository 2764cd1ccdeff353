//! A unit scan on a running bus (the control service's `/Scan` on a serial client).
//!
//! Every unit of the scan range that no device of the bus uses is asked with each profile's
//! identification reads, exactly as a configured device is probed. The scan shares the line
//! with polling: a scan transaction is made in a wait for the next read that is long enough for
//! a whole probe, or, when polling keeps the line busy, once polling has had twice the time the
//! previous probe took (the scan gets at most a third of a busy line), so a polled meter is
//! delayed by one probe at most and keeps most of its rate.
//! A unit that is silent, or answers but matches no profile, is asked once and left; a unit
//! that is identified joins the bus as a device of its own (up to [`MAX_DEVICES`]) and is
//! published and saved like any other.

use std::sync::atomic::Ordering;

use dmc_core::master::TransactionError;
use dmc_core::time::{Duration, Instant};

use super::{fill_words, read_request, Bus, MAX_DEVICES};
use crate::engine::device::{Device, Presence, PresenceChange, INITIAL_TIMEOUT};
use crate::engine::Observer;
use crate::spec::DeviceSpec;

/// On a busy line, polling gets this many times the line time of each scan transaction.
const POLLING_SHARE: u64 = 2;

/// A unit scan under way.
pub(super) struct UnitScan {
    /// The next unit to ask once the candidate is done (`None`: past the range).
    next_unit: Option<u8>,
    last: u8,
    /// The unit being identified.
    candidate: Option<Device>,
    /// When the last scan transaction ended and how long it took: the scan's turn comes again
    /// once polling has had [`POLLING_SHARE`] times that.
    last_probe: (Instant, Duration),
    found: usize,
}

impl Bus {
    /// Takes up a `/Scan` request: on a serial bus, starts walking the shared unit range.
    pub(super) fn start_unit_scan(&mut self) {
        let shared = self.shared.clone();
        if !self.config.method.is_serial() {
            return;
        }
        let (first, last) = shared.scan_units();
        let total = (first..=last).filter(|u| !self.unit_in_use(*u)).count();
        shared.scan_total.store(u32::try_from(total).unwrap_or(u32::MAX), Ordering::Relaxed);
        shared.scan_asked.store(0, Ordering::Relaxed);
        shared.scan_cancel.store(false, Ordering::Relaxed);
        shared.scan_running.store(true, Ordering::Relaxed);
        log::info!("{}: scanning units {first}-{last} ({total} not in use)", self.config.name());
        self.scan = Some(UnitScan {
            next_unit: Some(first),
            last,
            candidate: None,
            last_probe: (Instant::ZERO, Duration::ZERO),
            found: 0,
        });
    }

    /// Whether this pass is the scan's: a scan runs and polling has had its share of the line
    /// since the last probe (a `/Scan` = false is taken up here).
    pub(super) fn scan_turn(&mut self) -> bool {
        if self.shared.scan_cancel.swap(false, Ordering::Relaxed) && self.scan.is_some() {
            log::info!("{}: scan stopped", self.config.name());
            self.end_unit_scan();
        }
        let now = self.clock.now();
        self.scan.as_ref().is_some_and(|s| {
            now.saturating_since(s.last_probe.0) >= s.last_probe.1.saturating_mul(POLLING_SHARE)
        })
    }

    /// Whether a whole probe to a silent unit fits before `until` (the next read).
    pub(super) fn scan_fits(&self, until: Instant) -> bool {
        // A probe reads a few registers: request 8 bytes, answer at most 5 + 2 x 32.
        let cost = self.config.line.t35() + self.config.wire_time(8 + 69) + INITIAL_TIMEOUT;
        self.scan.is_some() && until.saturating_since(self.clock.now()) >= cost
    }

    /// One scan transaction; `false` when none was made (no scan, or it just ended).
    pub(super) async fn scan_step(&mut self, observer: &mut (dyn Observer + Send)) -> bool {
        let now = self.clock.now();
        let Some(mut candidate) = self.next_candidate(now) else { return false };
        let Some((bank, address, count)) = candidate.next_probe() else {
            self.unit_done();
            return false;
        };
        let request = read_request(bank, address, count);
        let ex = self.transact(candidate.spec.unit, &request, candidate.timeout(), None, observer).await;
        candidate.stats.requests += 1;
        fill_words(&self.master, &mut self.words);
        let done_at = ex.done_at;
        let change = match ex.result {
            Ok(()) => candidate.probe_result(Some(self.words.as_slice()), done_at),
            Err(TransactionError::Exception(_)) => candidate.probe_result(None, done_at),
            Err(e) => candidate.failed(super::failure_of(&e), done_at),
        };
        if let Some(scan) = self.scan.as_mut() {
            scan.last_probe = (ex.done_at, ex.done_at.saturating_since(now));
        }
        if change == Some(PresenceChange::Identified) {
            self.unit_done();
            self.add_found(candidate, observer, done_at);
        } else if matches!(candidate.presence, Presence::NotAnswering { .. }) {
            if candidate.unidentified() {
                log::info!("{}: answers, but matches no known model", candidate.spec);
            }
            self.unit_done();
        } else if let Some(scan) = self.scan.as_mut() {
            scan.candidate = Some(candidate);
        }
        true
    }

    /// The device being identified, a new one for the next free unit, or `None` (scan over).
    fn next_candidate(&mut self, now: Instant) -> Option<Device> {
        loop {
            let scan = self.scan.as_mut()?;
            if let Some(candidate) = scan.candidate.take() {
                return Some(candidate);
            }
            let Some(unit) = scan.next_unit else {
                let found = scan.found;
                log::info!("{}: scan done, {found} device(s) added", self.config.name());
                self.end_unit_scan();
                return None;
            };
            scan.next_unit = unit.checked_add(1).filter(|u| *u <= scan.last);
            if self.unit_in_use(unit) {
                continue;
            }
            let spec = DeviceSpec {
                method: self.config.method,
                target: self.config.target.clone(),
                rate_or_port: self.config.rate_or_port,
                unit,
                profile: None,
            };
            match Device::new(spec, now) {
                Ok(d) => return Some(d),
                Err(e) => {
                    log::error!("{e}");
                    self.unit_done();
                }
            }
        }
    }

    /// A unit was asked (found or not).
    fn unit_done(&self) {
        self.shared.scan_asked.fetch_add(1, Ordering::Relaxed);
    }

    fn end_unit_scan(&mut self) {
        self.scan = None;
        self.shared.scan_running.store(false, Ordering::Relaxed);
    }

    fn unit_in_use(&self, unit: u8) -> bool {
        self.devices.iter().any(|d| d.spec.unit == unit)
    }

    /// Adds an identified device to the running bus and tells the observer, as a probe would.
    fn add_found(&mut self, device: Device, observer: &mut (dyn Observer + Send), now: Instant) {
        let name = self.config.name();
        let product = device.profile.map_or("?", |p| p.product_name);
        let i = self.devices.len();
        if i >= MAX_DEVICES {
            log::warn!("{}: found {product}, but the bus has {MAX_DEVICES} devices already", device.spec);
            log::info!("{name}: scan stopped (bus full)");
            self.end_unit_scan();
            return;
        }
        log::info!("{}: found {product} by scanning; added", device.spec);
        let spec = device.spec.without_profile();
        self.devices.push(device);
        self.scheduled.push(None);
        self.shared.device_added(spec);
        if let Some(scan) = self.scan.as_mut() {
            scan.found += 1;
        }
        if let Err(e) = self.schedule_device(i) {
            log::error!("{e}");
        }
        if let Some(dev) = self.devices.get(i) {
            observer.presence(i, dev, PresenceChange::Identified, now);
        }
    }
}
