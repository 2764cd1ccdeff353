//! Dynamic generation: the PV-inverter output limit law ("zero export").
//!
//! A pure, allocation-free controller that turns grid-meter, PV-inverter,
//! battery and inverter/charger readings into an output limit for a PV
//! inverter (for the Growatt MIN: holding 3, percent of rated power). It never
//! reads a clock or does I/O: the caller passes `now` and the readings, each
//! stamped with the time it was last updated, and gets back a [`Step`].
//!
//! # The law
//!
//! Signs: grid power `g` is positive when importing; battery power `b` is
//! positive when charging; `E ≥ 0` is the export the site is allowed
//! (`export_limit_w`, default 0 W); `P` is the inverter's rated power.
//!
//! 1. **Room.** `e = g + E + d`, where `d = −b` while the battery discharges
//!    faster than `discharge_threshold_w` (default 100 W; PV replaces battery
//!    discharge, the last 100 W are left to the Multi as in the fork) and 0
//!    otherwise. `e > 0` means the site could absorb `e` more watts of PV.
//! 2. **Feed-forward.** The PV the site can absorb right now is
//!    `A = pv + e` (house load + battery charging + allowed export, minus the
//!    discharge being replaced). This is the fork's rule, and it is what keeps
//!    the loop fast: `A` barely depends on the inverter's own output, so a load
//!    step moves `A` within one meter sample and the limit never winds up above
//!    the load while the inverter is sun-limited.
//! 3. **Integral trim.** `trim += clamp(e, ±f)·dt/τ_i` (τ_i = `trim_time_constant`,
//!    default 30 s), clamped to ±`trim_max_percent` (default 10 %) of `P`, and
//!    only integrated while the limit is actually in force (the inverter
//!    produces within `follow_tolerance_percent` of the last written limit:
//!    not sun-limited, not in the middle of a move), the written limit is not
//!    pinned at the floor or 100 % in the direction of `e`, and `|e|` exceeds
//!    `trim_deadband_w`. The error is clamped to the follow tolerance `f`
//!    (126 W at 4200 W) so a load step, which the feed-forward handles, does
//!    not leave a bias behind. It removes steady offsets between the PV inverter's
//!    own power reading and the grid meter (a Growatt reading 2 % high would
//!    otherwise export 2 % of its output forever). Conditional integration is
//!    the anti-windup: at the floor, at 100 % and while sun-limited the trim is
//!    frozen.
//! 4. **Smoothing.** The setpoint `u` moves towards `A + trim` with a
//!    first-order filter, `u += α·(target − u)`, `α = dt / (τ + dt)`, using
//!    `rise_time_constant` (default 2 s) upwards and `fall_time_constant`
//!    (default 0: immediate) downwards. Falling fast bounds export excursions;
//!    rising slowly stops the inverter being hunted by load noise.
//! 5. **Clamp.** `u ∈ [floor, P]`, floor = `floor_percent` (default 2 %).
//!    An external limit in W (Venus ESS `/Ac/PowerLimit`) is applied on top:
//!    the lower one wins and [`Status::ExternalLimit`] says so. The external
//!    limit expires after `external_limit_timeout` (default 60 s, the
//!    `/Ac/PowerLimit` watchdog): it then reverts to "no limit" (`/Ac/MaxPower`).
//! 6. **Writes.** A new limit is emitted at most once per `write_interval`
//!    (default 1 s), and only when it differs from the last *written* one by
//!    more than `min_change_percent` (default 1 %), or reaches the floor or
//!    100 % exactly, or `refresh_interval` (default 60 s) has passed (re-arms a
//!    rebooted inverter). This hysteresis on the written value is the deadband.
//!
//! **Free running.** While the state of charge is below `soc_threshold_percent`
//! (default 90 %) and the inverter/charger can charge, PV runs free (100 %), as
//! in the fork: the Multi puts the surplus into the battery. Unlike the fork,
//! an export guard watches the meter: once export has exceeded the target by
//! more than `free_run_guard_w` (default 100 W) for `free_run_guard_delay`
//! (default 5 s) — the battery is charging at its maximum and the rest goes to
//! the grid — the normal law takes over for `free_run_hold` (default 60 s,
//! doubling up to 16× while it keeps tripping right after a release), after
//! which PV is released to probe 100 % again. It also releases early when the
//! battery charges `free_run_release_w` (default 200 W) below the power it
//! took when the guard tripped (a cloud or a load took PV away and the battery
//! has headroom again). Without the release the limit would ratchet down to
//! the cloudiest moment: the Multi keeps the grid at 0 W, so the meter never
//! asks for more.
//!
//! **Fail-safe.** The grid meter and the PV inverter's power are essential. If
//! either is missing, non-finite or older than `stale_after` (default 5 s), the
//! limit goes to the safe limit ([`SafeLimit`]) and the status says which input
//! failed. The default, [`SafeLimit::ExportTarget`], is `E / P` (never below
//! the floor): with no meter the controller cannot see the house load, and the
//! only limit that keeps export ≤ `E` whatever the load is PV ≤ `E`. With
//! `E = 0` that is the floor (2 % of a 4200 W inverter = 84 W, the worst-case
//! export with zero house load). Users who prefer yield over strict export
//! compliance can set [`SafeLimit::Percent`]. Battery power, state of charge,
//! voltage and charger state are optional: without them there is no free
//! running and no discharge replacement, which is the conservative choice.
//!
//! **Stability.** With the meter and inverter readings about 1 s old and an
//! inverter that follows its limit with a ~2 s first-order lag, the
//! feed-forward part is a gain-1 integrator on the grid error whose feedback
//! through the inverter's own reading cancels to first order (`A` is the load,
//! not the inverter output); what is left is the mismatch between two readings
//! taken up to a sample apart, which the 2 s rise filter (pole at
//! `1 − α ≈ 0.67` per 1 s step) damps. The trim's τ_i = 30 s is ten times the
//! loop's ~3 s dead-time-plus-lag, so its phase contribution at the loop's
//! crossover (~0.3 rad/s) is under 6°. `core/examples/control_day.rs` shows the
//! step responses and a simulated day against the fork's rule.
//!
//! **Sample ages.** A D-Bus value that does not change is not re-signalled, so
//! the driver should restamp slow values (state of charge, charger state) while
//! their service is present; they are judged against `slow_stale_after`
//! (default 5 min) rather than `stale_after`.
//!
//! Nothing here panics on any input, including NaN and infinities, which count
//! as missing.

use crate::time::{Duration, Instant};

/// Power magnitudes are clamped to this before any arithmetic (W).
const MAX_ABS_W: f32 = 1.0e7;
/// Longest step used for integration; a paused caller does not kick the trim.
const MAX_DT: Duration = Duration::from_secs(5);
/// Tolerance for "at a bound" comparisons (percent).
const PCT_EPS: f32 = 0.01;

/// A reading and the time it was last updated.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stamped<T> {
    /// The value.
    pub value: T,
    /// When it was last read or confirmed.
    pub at: Instant,
}

/// A numeric reading in SI units (W, %, V) with its time.
pub type Sample = Stamped<f32>;

impl<T> Stamped<T> {
    /// A reading taken at `at`.
    pub const fn new(value: T, at: Instant) -> Self {
        Self { value, at }
    }
}

/// Victron inverter/charger state (`com.victronenergy.vebus` `/State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChargerState {
    /// 0: off.
    Off,
    /// 1: low power mode (search).
    LowPower,
    /// 2: fault.
    Fault,
    /// 3: bulk charging.
    Bulk,
    /// 4: absorption charging.
    Absorption,
    /// 5: float charging.
    Float,
    /// 6: storage.
    Storage,
    /// 7: equalize.
    Equalize,
    /// 8: passthru (AC-in to AC-out, no charging or inverting).
    Passthru,
    /// 9: inverting.
    Inverting,
    /// 10: power assist.
    PowerAssist,
    /// 11: power supply mode.
    PowerSupply,
    /// 244: sustain.
    Sustain,
    /// 252: external control (ESS, hub4).
    ExternalControl,
    /// Any other code.
    Other(u16),
}

impl ChargerState {
    /// Decodes a `/State` value.
    pub const fn from_code(code: u16) -> Self {
        match code {
            0 => Self::Off,
            1 => Self::LowPower,
            2 => Self::Fault,
            3 => Self::Bulk,
            4 => Self::Absorption,
            5 => Self::Float,
            6 => Self::Storage,
            7 => Self::Equalize,
            8 => Self::Passthru,
            9 => Self::Inverting,
            10 => Self::PowerAssist,
            11 => Self::PowerSupply,
            244 => Self::Sustain,
            252 => Self::ExternalControl,
            c => Self::Other(c),
        }
    }

    /// The `/State` value.
    pub const fn code(self) -> u16 {
        match self {
            Self::Off => 0,
            Self::LowPower => 1,
            Self::Fault => 2,
            Self::Bulk => 3,
            Self::Absorption => 4,
            Self::Float => 5,
            Self::Storage => 6,
            Self::Equalize => 7,
            Self::Passthru => 8,
            Self::Inverting => 9,
            Self::PowerAssist => 10,
            Self::PowerSupply => 11,
            Self::Sustain => 244,
            Self::ExternalControl => 252,
            Self::Other(c) => c,
        }
    }

    /// Whether the battery can take or give power through the inverter/charger
    /// in this state. Off, fault, passthru and low-power mode cannot; unknown
    /// codes are assumed able (the battery power reading still decides).
    pub const fn moves_battery_power(self) -> bool {
        !matches!(self, Self::Off | Self::LowPower | Self::Fault | Self::Passthru)
    }
}

/// Everything the law looks at in one step. `None` means "not known".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Inputs {
    /// Grid meter power, W, import positive (SDM230 / `grid:/Ac/Power`). Essential.
    pub grid_power_w: Option<Sample>,
    /// PV inverter AC output, W (Growatt `/Ac/Power`). Essential.
    pub pv_power_w: Option<Sample>,
    /// Battery power, W, charging positive.
    pub battery_power_w: Option<Sample>,
    /// Battery state of charge, %.
    pub soc_percent: Option<Sample>,
    /// Battery voltage, V. Carried for diagnostics; the law does not use it.
    pub battery_voltage_v: Option<Sample>,
    /// Inverter/charger state.
    pub charger_state: Option<Stamped<ChargerState>>,
    /// Inverter/charger AC-in power, W, import positive. Used as the grid
    /// reading when the meter is missing and [`Config::ac_in_is_grid`] is set.
    pub ac_in_power_w: Option<Sample>,
    /// External limit in W (`/Ac/PowerLimit` written by ESS), stamped with the
    /// time of the last write (every write refreshes the watchdog).
    pub external_limit_w: Option<Sample>,
    /// Rated power reported by the inverter (Growatt holding 6–7), W. Used
    /// when [`Config::max_power_w`] is not set.
    pub max_power_w: Option<f32>,
}

/// Which limit applies when an essential input fails.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SafeLimit {
    /// `export_limit_w / max_power` (at least the floor): guarantees export
    /// ≤ target whatever the house load. The default.
    ExportTarget,
    /// A fixed percent of rated power (clamped to floor..=100).
    Percent(f32),
}

/// Controller settings (persisted). Non-finite or out-of-range values are
/// replaced by their defaults at each step, never trusted.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Config {
    /// Master switch. Disabled releases the inverter to 100 % once.
    pub enabled: bool,
    /// Allowed export, W (≥ 0). Default 0.
    pub export_limit_w: f32,
    /// Rated power from the settings, W; 0 (default) = use the inverter's own
    /// figure ([`Inputs::max_power_w`]).
    pub max_power_w: f32,
    /// Below this state of charge PV runs free, %. Default 90.
    pub soc_threshold_percent: f32,
    /// Lowest limit ever applied, %. Default 2.
    pub floor_percent: f32,
    /// Battery discharge above this is replaced by PV, W. Default 100.
    pub discharge_threshold_w: f32,
    /// Grid, PV and battery power older than this are stale. Default 5 s.
    pub stale_after: Duration,
    /// State of charge, voltage and charger state older than this are stale. Default 5 min.
    pub slow_stale_after: Duration,
    /// An external limit not refreshed for this long expires. Default 60 s.
    pub external_limit_timeout: Duration,
    /// Minimum time between writes. Default 1 s.
    pub write_interval: Duration,
    /// Re-write an unchanged limit after this long. Default 60 s.
    pub refresh_interval: Duration,
    /// Write only when the limit moves by more than this, %. Default 1.
    pub min_change_percent: f32,
    /// Limit used when the meter or the inverter reading fails.
    pub safe_limit: SafeLimit,
    /// Smoothing time constant for rising limits. Default 2 s.
    pub rise_time_constant: Duration,
    /// Smoothing time constant for falling limits. Default 0 (immediate).
    pub fall_time_constant: Duration,
    /// Integral trim time constant τ_i. Default 30 s.
    pub trim_time_constant: Duration,
    /// Integral trim bound, % of rated power. Default 10.
    pub trim_max_percent: f32,
    /// Grid error below which the trim does not integrate, W. Default 20.
    pub trim_deadband_w: f32,
    /// The inverter "follows" its limit when within this, % of rated. Default 3.
    pub follow_tolerance_percent: f32,
    /// While free running, export beyond the target tolerated before limiting, W. Default 100.
    pub free_run_guard_w: f32,
    /// Export beyond the target must last this long to trip the guard (the
    /// Multi's own lag makes short bursts after a load step). Default 5 s.
    pub free_run_guard_delay: Duration,
    /// The guard holds the normal law this long, then probes 100 % again;
    /// doubled (up to 16×) when it trips again soon after a release. Default 60 s.
    pub free_run_hold: Duration,
    /// The guard releases when the battery charges this much below the power it
    /// took when the guard latched (it has headroom again), W. Default 200.
    pub free_run_release_w: f32,
    /// The inverter/charger's AC-in is the grid connection point (PV on
    /// AC-out): use AC-in power when the meter is silent. Default false.
    pub ac_in_is_grid: bool,
}

impl Config {
    /// Defaults with the rated power taken from the inverter.
    pub const DEFAULT: Self = Self {
        enabled: true,
        export_limit_w: 0.0,
        max_power_w: 0.0,
        soc_threshold_percent: 90.0,
        floor_percent: 2.0,
        discharge_threshold_w: 100.0,
        stale_after: Duration::from_secs(5),
        slow_stale_after: Duration::from_secs(300),
        external_limit_timeout: Duration::from_secs(60),
        write_interval: Duration::from_secs(1),
        refresh_interval: Duration::from_secs(60),
        min_change_percent: 1.0,
        safe_limit: SafeLimit::ExportTarget,
        rise_time_constant: Duration::from_secs(2),
        fall_time_constant: Duration::ZERO,
        trim_time_constant: Duration::from_secs(30),
        trim_max_percent: 10.0,
        trim_deadband_w: 20.0,
        follow_tolerance_percent: 3.0,
        free_run_guard_w: 100.0,
        free_run_guard_delay: Duration::from_secs(5),
        free_run_hold: Duration::from_secs(60),
        free_run_release_w: 200.0,
        ac_in_is_grid: false,
    };

    /// Defaults with a rated power from the settings or the profile.
    pub const fn with_max_power(max_power_w: f32) -> Self {
        Self { max_power_w, ..Self::DEFAULT }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The input whose failure put the controller in fail-safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FailedInput {
    /// Grid meter power missing, invalid or stale.
    GridMeter,
    /// PV inverter power missing, invalid or stale.
    PvInverter,
    /// No valid rated power (neither settings nor inverter).
    MaxPower,
}

/// What is deciding the limit (for `/DynamicGeneration/Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// Dynamic generation is switched off; the inverter was released to 100 %.
    Disabled,
    /// Battery below the SoC threshold and able to charge: PV runs free.
    FreeRunning,
    /// The limit follows what the site can absorb.
    Tracking,
    /// The limit is held at the floor and cannot go lower; export may exceed the target.
    Limited,
    /// An essential input failed; the safe limit is applied.
    FailSafe(FailedInput),
    /// The external limit (`/Ac/PowerLimit`) is lower than the controller's and in force.
    ExternalLimit,
}

impl Status {
    /// Text for `/DynamicGeneration/Status`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Disabled => "Disabled",
            Self::FreeRunning => "Free running (battery charging)",
            Self::Tracking => "Tracking",
            Self::Limited => "Limited (at floor)",
            Self::FailSafe(FailedInput::GridMeter) => "Fail-safe: grid meter",
            Self::FailSafe(FailedInput::PvInverter) => "Fail-safe: PV inverter",
            Self::FailSafe(FailedInput::MaxPower) => "Fail-safe: rated power unknown",
            Self::ExternalLimit => "External limit",
        }
    }

    /// A stable number for an integer D-Bus path.
    pub const fn code(self) -> u8 {
        match self {
            Self::Disabled => 0,
            Self::FreeRunning => 1,
            Self::Tracking => 2,
            Self::Limited => 3,
            Self::FailSafe(FailedInput::GridMeter) => 10,
            Self::FailSafe(FailedInput::PvInverter) => 11,
            Self::FailSafe(FailedInput::MaxPower) => 12,
            Self::ExternalLimit => 20,
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// An output limit.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limit {
    /// Percent of rated power, within [floor, 100].
    pub percent: f32,
    /// The same in W (0 when the rated power is unknown).
    pub watts: f32,
}

impl Limit {
    /// The percent as a register value (nearest integer, 0..=100), e.g. for
    /// Growatt holding 3.
    pub fn register_percent(self) -> u16 {
        let p = self.percent.clamp(0.0, 100.0);
        // `as` saturates and maps NaN to 0; `p` is finite here anyway.
        (p + 0.5) as u16
    }
}

/// What the caller should do with the inverter.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// Leave the inverter's limit as it is.
    NoChange,
    /// Write this limit.
    Write(Limit),
}

/// The result of one [`Controller::step`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Step {
    /// Write or not.
    pub command: Command,
    /// The limit the law wants in force now (written or not).
    pub limit: Limit,
    /// What is deciding it.
    pub status: Status,
    /// The absorbable-PV estimate `A + trim`, W (unclamped demand, for
    /// `/DynamicGeneration/Power`); 0 in fail-safe and disabled.
    pub demand_w: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Written {
    percent: f32,
    at: Instant,
}

/// The dynamic generation controller. See the [module documentation](self).
///
/// Call [`step`](Self::step) once per meter update (about 1 s) with monotonic
/// `now`; act on the returned [`Command`]; call
/// [`write_failed`](Self::write_failed) when a write did not reach the
/// inverter so the next step writes again.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Controller {
    config: Config,
    /// Smoothed setpoint, W; `None` before the first tracking step.
    setpoint_w: Option<f32>,
    trim_w: f32,
    guard: Guard,
    last_step: Option<Instant>,
    written: Option<Written>,
    status: Status,
}

impl Controller {
    /// A controller with nothing written yet.
    pub const fn new(config: Config) -> Self {
        Self {
            config,
            setpoint_w: None,
            trim_w: 0.0,
            guard: Guard::IDLE,
            last_step: None,
            written: None,
            status: Status::Tracking,
        }
    }

    /// Replaces the settings, keeping the controller state.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Forgets the last write (it failed, or the inverter restarted), so the
    /// next step writes whatever is in force.
    pub fn write_failed(&mut self) {
        self.written = None;
    }

    /// One control step at `now`.
    pub fn step(&mut self, now: Instant, inputs: &Inputs) -> Step {
        let cfg = Sane::from(&self.config);
        let dt = match self.last_step {
            Some(t) => now.saturating_since(t).min(MAX_DT),
            None => Duration::ZERO,
        };
        self.last_step = Some(self.last_step.map_or(now, |t| t.max(now)));
        let dt_s = dt.as_secs_f32();

        let p_max = [cfg.max_power_w, inputs.max_power_w.unwrap_or(0.0)]
            .into_iter()
            .find(|p| p.is_finite() && *p > 0.0 && *p <= MAX_ABS_W);

        if !self.config.enabled {
            self.reset_law();
            let limit = Limit { percent: 100.0, watts: p_max.unwrap_or(0.0) };
            return self.finish(now, &cfg, limit, Status::Disabled, 0.0);
        }
        let Some(p_max) = p_max else {
            return self.fail_safe(now, &cfg, FailedInput::MaxPower, 0.0, None);
        };
        let floor_w = cfg.floor_percent / 100.0 * p_max;

        let external =
            fresh(inputs.external_limit_w, now, cfg.external_limit_timeout).map(|w| w.clamp(0.0, MAX_ABS_W));

        let grid = fresh(inputs.grid_power_w, now, cfg.stale_after).or_else(|| {
            if cfg.ac_in_is_grid {
                fresh(inputs.ac_in_power_w, now, cfg.stale_after)
            } else {
                None
            }
        });
        let Some(grid) = grid else {
            return self.fail_safe(now, &cfg, FailedInput::GridMeter, p_max, external);
        };
        let Some(pv) = fresh(inputs.pv_power_w, now, cfg.stale_after) else {
            return self.fail_safe(now, &cfg, FailedInput::PvInverter, p_max, external);
        };
        let grid = grid.clamp(-MAX_ABS_W, MAX_ABS_W);
        let pv = pv.clamp(0.0, MAX_ABS_W);

        let battery_able = inputs
            .charger_state
            .filter(|s| now.saturating_since(s.at) <= cfg.slow_stale_after)
            .is_none_or(|s| s.value.moves_battery_power());
        let battery = fresh(inputs.battery_power_w, now, cfg.stale_after)
            .filter(|_| battery_able)
            .map(|b| b.clamp(-MAX_ABS_W, MAX_ABS_W));
        let soc = fresh(inputs.soc_percent, now, cfg.slow_stale_after).filter(|_| battery_able);

        // 1. room, 2. feed-forward.
        let replace = match battery {
            Some(b) if -b > cfg.discharge_threshold_w => -b,
            _ => 0.0,
        };
        let room = grid + cfg.export_limit_w + replace;
        let absorbable = pv + room;

        // 3. integral trim, only while the applied limit is in force.
        let applied = self.written.map_or(p_max, |w| w.percent / 100.0 * p_max);
        let follow_w = cfg.follow_tolerance_percent / 100.0 * p_max;
        let in_force = (pv - applied).abs() <= follow_w;
        let pinned_low = applied <= floor_w + 1e-3 && room < 0.0;
        let pinned_high = applied >= p_max - 1e-3 && room > 0.0;
        if in_force && !pinned_low && !pinned_high && room.abs() > cfg.trim_deadband_w && dt_s > 0.0 {
            let tau = cfg.trim_time_constant.as_secs_f32();
            let trim_max = cfg.trim_max_percent / 100.0 * p_max;
            // Only bias-sized errors: a load step is the feed-forward's job.
            let step = if tau > 0.0 { room.clamp(-follow_w, follow_w) * dt_s / tau } else { 0.0 };
            self.trim_w = (self.trim_w + step).clamp(-trim_max, trim_max);
        }
        let demand = absorbable + self.trim_w;

        // Free running with an export guard.
        let free_run = soc.is_some_and(|s| s < cfg.soc_threshold_percent);
        self.free_run_guard(now, &cfg, free_run && demand < p_max, room, battery);
        let free = free_run && self.guard.latched_until.is_none();
        let target = if free { p_max } else { demand }.clamp(floor_w, p_max);

        // 4. smoothing.
        let u = match self.setpoint_w {
            None => target,
            Some(u) => {
                let tau = if target < u { cfg.fall_time_constant } else { cfg.rise_time_constant };
                u + alpha(dt_s, tau.as_secs_f32()) * (target - u)
            }
        };
        let u = u.clamp(floor_w, p_max);
        self.setpoint_w = Some(u);

        // 5. clamp and external limit.
        let (watts, status) = match external {
            Some(x) if x < u => (x.clamp(floor_w, p_max), Status::ExternalLimit),
            _ if free => (u, Status::FreeRunning),
            _ if u <= floor_w + 1e-3 => (u, Status::Limited),
            _ => (u, Status::Tracking),
        };
        let limit = Limit { percent: (watts / p_max * 100.0).clamp(cfg.floor_percent, 100.0), watts };
        self.finish(now, &cfg, limit, status, demand)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The status of the last step.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The last limit emitted by a [`Command::Write`], in percent.
    pub fn written_percent(&self) -> Option<f32> {
        self.written.map(|w| w.percent)
    }

    /// The integral trim, W (diagnostics).
    pub fn trim_w(&self) -> f32 {
        self.trim_w
    }

    /// The export guard while free running (see the module documentation).
    fn free_run_guard(&mut self, now: Instant, cfg: &Sane, active: bool, room: f32, battery: Option<f32>) {
        let g = &mut self.guard;
        if !active {
            *g = Guard { hold: g.hold, ..Guard::IDLE };
            return;
        }
        if let Some(until) = g.latched_until {
            let headroom = battery.is_some_and(|b| b < g.battery_w - cfg.free_run_release_w);
            if now >= until || headroom {
                g.latched_until = None;
                g.released_at = Some(now);
            }
        }
        g.exporting_since =
            if room < -cfg.free_run_guard_w { Some(g.exporting_since.unwrap_or(now)) } else { None };
        let tripped = g.exporting_since.is_some_and(|t| now.saturating_since(t) >= cfg.free_run_guard_delay);
        if g.latched_until.is_none() && tripped {
            let base = cfg.free_run_hold;
            let soon = g.released_at.is_some_and(|r| now.saturating_since(r) < g.hold.saturating_mul(2));
            g.hold =
                if soon { g.hold.saturating_mul(2).min(base.saturating_mul(16)).max(base) } else { base };
            g.latched_until = Some(now + g.hold);
            g.battery_w = battery.unwrap_or(0.0);
            g.exporting_since = None;
        }
    }

    fn reset_law(&mut self) {
        self.setpoint_w = None;
        self.trim_w = 0.0;
        self.guard = Guard::IDLE;
    }

    fn fail_safe(
        &mut self,
        now: Instant,
        cfg: &Sane,
        input: FailedInput,
        p_max: f32,
        external: Option<f32>,
    ) -> Step {
        let mut percent = match cfg.safe_limit {
            SafeLimit::ExportTarget if p_max > 0.0 => cfg.export_limit_w / p_max * 100.0,
            SafeLimit::ExportTarget => cfg.floor_percent,
            SafeLimit::Percent(p) => p,
        };
        if let Some(x) = external.filter(|_| p_max > 0.0) {
            percent = percent.min(x / p_max * 100.0);
        }
        let percent = percent.clamp(cfg.floor_percent, 100.0);
        let watts = percent / 100.0 * p_max;
        // Resume from the safe limit when the input returns (bumpless).
        self.reset_law();
        if p_max > 0.0 {
            self.setpoint_w = Some(watts);
        }
        self.finish(now, cfg, Limit { percent, watts }, Status::FailSafe(input), 0.0)
    }

    fn finish(&mut self, now: Instant, cfg: &Sane, limit: Limit, status: Status, demand: f32) -> Step {
        self.status = status;
        let write = match self.written {
            None => true,
            Some(w) => {
                let since = now.saturating_since(w.at);
                let delta = (limit.percent - w.percent).abs();
                let at_bound =
                    limit.percent >= 100.0 - PCT_EPS || limit.percent <= cfg.floor_percent + PCT_EPS;
                let refresh = since >= cfg.refresh_interval && status != Status::Disabled;
                since >= cfg.write_interval
                    && (delta > cfg.min_change_percent || (at_bound && delta > PCT_EPS) || refresh)
            }
        };
        let command = if write {
            self.written = Some(Written { percent: limit.percent, at: now });
            Command::Write(limit)
        } else {
            Command::NoChange
        };
        let demand_w = if demand.is_finite() { demand } else { 0.0 };
        Step { command, limit, status, demand_w }
    }
}

/// Free-run export guard state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Guard {
    /// Export beyond the guard began here.
    exporting_since: Option<Instant>,
    /// Latched (normal law in force) until then.
    latched_until: Option<Instant>,
    /// Last release.
    released_at: Option<Instant>,
    /// Current hold (backs off on repeated trips).
    hold: Duration,
    /// Battery power when the guard tripped (its apparent maximum).
    battery_w: f32,
}

impl Guard {
    const IDLE: Self = Self {
        exporting_since: None,
        latched_until: None,
        released_at: None,
        hold: Duration::ZERO,
        battery_w: 0.0,
    };
}

/// The fresh, finite value of a reading, if any.
fn fresh(s: Option<Sample>, now: Instant, max_age: Duration) -> Option<f32> {
    s.filter(|s| s.value.is_finite() && now.saturating_since(s.at) <= max_age).map(|s| s.value)
}

/// Backward-Euler first-order filter gain in [0, 1].
fn alpha(dt_s: f32, tau_s: f32) -> f32 {
    if tau_s <= 0.0 {
        1.0
    } else {
        dt_s / (tau_s + dt_s)
    }
}

/// The configuration with every number checked.
struct Sane {
    export_limit_w: f32,
    max_power_w: f32,
    soc_threshold_percent: f32,
    floor_percent: f32,
    discharge_threshold_w: f32,
    stale_after: Duration,
    slow_stale_after: Duration,
    external_limit_timeout: Duration,
    write_interval: Duration,
    refresh_interval: Duration,
    min_change_percent: f32,
    safe_limit: SafeLimit,
    rise_time_constant: Duration,
    fall_time_constant: Duration,
    trim_time_constant: Duration,
    trim_max_percent: f32,
    trim_deadband_w: f32,
    follow_tolerance_percent: f32,
    free_run_guard_w: f32,
    free_run_guard_delay: Duration,
    free_run_hold: Duration,
    free_run_release_w: f32,
    ac_in_is_grid: bool,
}

fn sane(x: f32, default: f32, lo: f32, hi: f32) -> f32 {
    if x.is_finite() {
        x.clamp(lo, hi)
    } else {
        default
    }
}

impl From<&Config> for Sane {
    fn from(c: &Config) -> Self {
        let d = Config::DEFAULT;
        let floor_percent = sane(c.floor_percent, d.floor_percent, 0.0, 100.0);
        Self {
            export_limit_w: sane(c.export_limit_w, d.export_limit_w, 0.0, MAX_ABS_W),
            max_power_w: if c.max_power_w.is_finite() { c.max_power_w } else { 0.0 },
            soc_threshold_percent: sane(c.soc_threshold_percent, d.soc_threshold_percent, 0.0, 100.0),
            floor_percent,
            discharge_threshold_w: sane(c.discharge_threshold_w, d.discharge_threshold_w, 0.0, MAX_ABS_W),
            stale_after: c.stale_after,
            slow_stale_after: c.slow_stale_after,
            external_limit_timeout: c.external_limit_timeout,
            write_interval: c.write_interval,
            refresh_interval: c.refresh_interval,
            min_change_percent: sane(c.min_change_percent, d.min_change_percent, 0.0, 100.0),
            safe_limit: match c.safe_limit {
                SafeLimit::Percent(p) if !p.is_finite() => SafeLimit::ExportTarget,
                s => s,
            },
            rise_time_constant: c.rise_time_constant,
            fall_time_constant: c.fall_time_constant,
            trim_time_constant: c.trim_time_constant,
            trim_max_percent: sane(c.trim_max_percent, d.trim_max_percent, 0.0, 100.0),
            trim_deadband_w: sane(c.trim_deadband_w, d.trim_deadband_w, 0.0, MAX_ABS_W),
            follow_tolerance_percent: sane(
                c.follow_tolerance_percent,
                d.follow_tolerance_percent,
                0.0,
                100.0,
            ),
            free_run_guard_w: sane(c.free_run_guard_w, d.free_run_guard_w, 0.0, MAX_ABS_W),
            free_run_guard_delay: c.free_run_guard_delay,
            free_run_hold: c.free_run_hold,
            free_run_release_w: sane(c.free_run_release_w, d.free_run_release_w, 0.0, MAX_ABS_W),
            ac_in_is_grid: c.ac_in_is_grid,
        }
    }
}
