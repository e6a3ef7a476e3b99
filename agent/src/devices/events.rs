//! Device events (`scs_protocol::EventKind`): transitions the probe results show, detected after each
//! probe from the device's cached state, queued in a bounded queue and drained into the next telemetry
//! batch (where the durable outbox takes over).
//!
//! The first observation of a condition only sets the baseline: an agent restart does not report every
//! camera as "up". Flapping is damped per condition: "down" needs two failed reach probes in a row,
//! and a condition reported bad is not reported bad again within [`HOLD_MS`] of the previous bad report
//! (the recovery is reported at once, a renewed failure waits for the hold to end), so a device that
//! flaps every probe yields at most one lost/restored pair per hold period.

use std::collections::{BTreeMap, VecDeque};

use scs_protocol::{DeviceEvent, EventKind};

use super::baseline::Baseline;
use super::{DeviceState, ErrorClass, ProbeResult, Tier};

/// Events waiting for a telemetry batch. A whole batch may carry 256; past this bound the oldest are
/// dropped (and counted) rather than growing memory while the gateway cannot queue.
pub const MAX_PENDING: usize = 256;
/// Minimum time between two "bad" reports of the same condition.
pub const HOLD_MS: u64 = 10 * 60 * 1000;
/// Failed reach probes in a row before a device counts as down.
pub const DOWN_CONFIRM: u32 = 2;
/// Uptime may read a few seconds low between two reads (rounding, clock steps) without a reboot.
const UPTIME_SLACK_S: u64 = 5;
/// Across an agent restart the boot time is compared as gateway clock minus device uptime, which two
/// clocks and the baseline's own age blur: a reboot counts when the device booted this much later than
/// the baseline says (plus 0.1 % of the time since the baseline).
const RESTART_BOOT_SLACK_S: u64 = 120;
/// The persisted boot estimate is rewritten when it drifts this far from the current one (device and
/// gateway clocks run at slightly different rates): a rare write that keeps the restart check tight.
const BOOT_DRIFT_REWRITE_S: u64 = 60;

#[derive(Debug, Clone, Default)]
struct Condition {
    /// Last state reported (or the baseline); `true` = bad.
    reported: Option<bool>,
    candidate: Option<bool>,
    streak: u32,
    last_bad_ms: Option<u64>,
}

/// A watched condition of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Down,
    Auth,
    Hdd(&'a str),
    Stream(&'a str),
}

/// [`Key`] as stored: the device-supplied names are allocated once, when the condition is first seen.
#[derive(Debug, Clone)]
enum StoredKey {
    Down,
    Auth,
    Hdd(Box<str>),
    Stream(Box<str>),
}

impl StoredKey {
    fn is(&self, k: Key<'_>) -> bool {
        match (self, k) {
            (StoredKey::Down, Key::Down) | (StoredKey::Auth, Key::Auth) => true,
            (StoredKey::Hdd(a), Key::Hdd(b)) | (StoredKey::Stream(a), Key::Stream(b)) => **a == *b,
            _ => false,
        }
    }

    fn of(k: Key<'_>) -> StoredKey {
        match k {
            Key::Down => StoredKey::Down,
            Key::Auth => StoredKey::Auth,
            Key::Hdd(s) => StoredKey::Hdd(s.into()),
            Key::Stream(s) => StoredKey::Stream(s.into()),
        }
    }
}

/// Per-device memory of what has been reported.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// A handful per device (down, auth, one per stream or disk): a list beats a hash table here.
    conditions: Vec<(StoredKey, Condition)>,
    /// Serial, firmware and boot time the identity events compare against; persisted in `agent.db`
    /// (`baseline.rs`) so the comparison survives a restart.
    baseline: Option<Baseline>,
    /// Device uptime at the last management round of this process.
    uptime_s: Option<u64>,
    /// `baseline` changed since it was last taken for persisting.
    baseline_changed: bool,
}

impl Watch {
    /// Starts from a baseline persisted by an earlier run.
    pub fn restore(&mut self, b: Baseline) {
        self.baseline = Some(b);
    }

    /// The baseline, when it changed since the last call (to be persisted).
    pub fn take_changed_baseline(&mut self) -> Option<Baseline> {
        if !std::mem::take(&mut self.baseline_changed) {
            return None;
        }
        self.baseline.clone()
    }

    /// Feeds one observation of `key`; returns the new state when a transition is to be reported.
    fn observe(&mut self, key: Key<'_>, bad: bool, confirm: u32, now_ms: u64) -> Option<bool> {
        let i = match self.conditions.iter().position(|(k, _)| k.is(key)) {
            Some(i) => i,
            None => {
                self.conditions.push((StoredKey::of(key), Condition::default()));
                self.conditions.len() - 1
            }
        };
        let (_, c) = self.conditions.get_mut(i)?;
        if c.candidate == Some(bad) {
            c.streak = c.streak.saturating_add(1);
        } else {
            c.candidate = Some(bad);
            c.streak = 1;
        }
        if c.streak < confirm.max(1) {
            return None;
        }
        match c.reported {
            None => {
                c.reported = Some(bad);
                None
            }
            Some(r) if r == bad => None,
            Some(_) => {
                if bad && c.last_bad_ms.is_some_and(|t| now_ms < t.saturating_add(HOLD_MS)) {
                    // Held: the state stays "good" as reported; a later observation re-evaluates.
                    return None;
                }
                c.reported = Some(bad);
                if bad {
                    c.last_bad_ms = Some(now_ms);
                }
                Some(bad)
            }
        }
    }
}

fn event(sensor: &str, ts: u64, kind: &str, detail: String, attrs: &[(&str, &str)]) -> DeviceEvent {
    let mut e = DeviceEvent::new(sensor, ts, kind);
    // Device-supplied text is bounded before it reaches the protocol's limits.
    let clip = |s: &str| s.chars().take(200).collect::<String>();
    e.detail = Some(clip(&detail));
    let map: BTreeMap<String, String> = attrs.iter().map(|(k, v)| ((*k).to_owned(), clip(v))).collect();
    e.attrs = (!map.is_empty()).then_some(map);
    e
}

/// The events one probe result causes, given the device state after the result was recorded
/// (identity, disks, streams already updated by the probe).
pub fn after_probe(sensor: &str, s: &mut DeviceState, r: ProbeResult) -> Vec<DeviceEvent> {
    let mut out = Vec::new();
    let now = r.ts_ms;
    let class = r.class.as_str();
    // Reachability.
    if r.tier == Tier::Reach && (r.class.is_down() || r.class == ErrorClass::Ok) {
        let down = r.class.is_down();
        let confirm = if down { DOWN_CONFIRM } else { 1 };
        match s.watch.observe(Key::Down, down, confirm, now) {
            Some(true) => {
                out.push(event(sensor, now, EventKind::WENT_DOWN, format!("not answering ({class})"), &[("class", class)]))
            }
            Some(false) => out.push(event(sensor, now, EventKind::CAME_BACK, "answering again".into(), &[("class", class)])),
            None => {}
        }
    }
    // Credentials.
    if r.tier != Tier::Reach && (r.class == ErrorClass::Auth || r.class == ErrorClass::Ok) {
        let tier = r.tier.as_str();
        match s.watch.observe(Key::Auth, r.class == ErrorClass::Auth, 1, now) {
            Some(true) => {
                out.push(event(sensor, now, EventKind::AUTH_BROKEN, format!("credentials refused ({tier})"), &[("tier", tier)]))
            }
            Some(false) => out.push(event(
                sensor,
                now,
                EventKind::AUTH_RESTORED,
                format!("credentials accepted ({tier})"),
                &[("tier", tier)],
            )),
            None => {}
        }
    }
    if r.tier == Tier::Management && r.class == ErrorClass::Ok {
        identity_events(sensor, s, now, &mut out);
        // Split borrows: the watch is updated while the disks are read, without copying them.
        let DeviceState { hdds, watch, .. } = s;
        for d in hdds.iter() {
            let (id, status) = (d.id.as_str(), d.status.as_str());
            let bad = !status.eq_ignore_ascii_case("ok");
            let kind = match watch.observe(Key::Hdd(id), bad, 1, now) {
                Some(true) => EventKind::HDD_FAILED,
                Some(false) => EventKind::HDD_RESTORED,
                None => continue,
            };
            out.push(event(sensor, now, kind, format!("disk {id}: {status}"), &[("hdd", id), ("status", status)]));
        }
    }
    if matches!(r.tier, Tier::Stream | Tier::Sample) && r.class != ErrorClass::Auth {
        // A stream is lost when DESCRIBE fails, or when it answers DESCRIBE but the sampled PLAY of
        // it (the first stream) got no frames: the failure operators care most about.
        let sample = s.last(Tier::Sample).map(|x| x.class).filter(|c| *c != ErrorClass::Auth);
        let DeviceState { streams, watch, .. } = s;
        for (i, st) in streams.iter().enumerate() {
            let Some(describe) = st.class.filter(|c| *c != ErrorClass::Auth) else { continue };
            let profile = st.profile.as_str();
            let sampled = if i == 0 { sample.filter(|c| *c != ErrorClass::Ok) } else { None };
            let worst = if describe != ErrorClass::Ok { describe } else { sampled.unwrap_or(ErrorClass::Ok) };
            let bad = worst != ErrorClass::Ok;
            let c = worst.as_str();
            let why = if describe == ErrorClass::Ok && bad { "answers DESCRIBE but sends no frames" } else { "not answering" };
            match watch.observe(Key::Stream(profile), bad, 1, now) {
                Some(true) => out.push(event(
                    sensor,
                    now,
                    EventKind::STREAM_LOST,
                    format!("stream {profile}: {why} ({c})"),
                    &[("profile", profile), ("class", c)],
                )),
                Some(false) => out.push(event(
                    sensor,
                    now,
                    EventKind::STREAM_RESTORED,
                    format!("stream {profile}: frames again"),
                    &[("profile", profile), ("class", c)],
                )),
                None => {}
            }
        }
    }
    out
}

/// Whether a device seen at `up` seconds of uptime at gateway time `now_s` has booted since the
/// persisted baseline was taken (`b.uptime_s` at `b.seen_s`), across an agent restart.
fn rebooted_since(b: &Baseline, up: u64, now_s: u64) -> bool {
    let (Some(old_up), Some(seen)) = (b.uptime_s, b.seen_s) else { return false };
    match now_s.checked_sub(seen) {
        // Uptime should have grown by the time that passed; a device that booted since reads less.
        Some(elapsed) => {
            let slack = RESTART_BOOT_SLACK_S.saturating_add(elapsed / 1000);
            up.saturating_add(slack) < old_up.saturating_add(elapsed)
        }
        // The gateway clock reads earlier than when the baseline was taken (no time sync yet after a
        // gateway reboot): only an uptime lower than the recorded one is certain.
        None => up.saturating_add(UPTIME_SLACK_S) < old_up,
    }
}

fn identity_events(sensor: &str, s: &mut DeviceState, now: u64, out: &mut Vec<DeviceEvent>) {
    let DeviceState { identity, health, watch, .. } = s;
    let base = watch.baseline.get_or_insert_with(Baseline::default);
    let mut changed = false;
    if let Some(new) = identity.as_deref().filter(|i| !i.serial.is_empty() || !i.firmware.is_empty()) {
        let (old_serial, old_fw) = (&*base.serial, &*base.firmware);
        if !old_serial.is_empty() && !new.serial.is_empty() && old_serial != new.serial {
            out.push(event(
                sensor,
                now,
                EventKind::REPLACED,
                format!("serial {old_serial} -> {}", new.serial),
                &[("old", old_serial), ("new", &new.serial)],
            ));
            // Another unit: its uptime and firmware are not comparable with the old one's.
            watch.uptime_s = None;
            base.uptime_s = None;
            base.seen_s = None;
        } else if !old_fw.is_empty() && !new.firmware.is_empty() && old_fw != new.firmware {
            out.push(event(
                sensor,
                now,
                EventKind::FIRMWARE_CHANGED,
                format!("firmware {old_fw} -> {}", new.firmware),
                &[("old", old_fw), ("new", &new.firmware)],
            ));
        }
        if *base.serial != *new.serial || *base.firmware != *new.firmware {
            base.serial = new.serial.as_str().into();
            base.firmware = new.firmware.as_str().into();
            changed = true;
        }
    }
    if let Some(up) = health.as_ref().and_then(|h| h.uptime_s) {
        let now_s = now / 1000;
        let rebooted = match watch.uptime_s {
            Some(old) => up.saturating_add(UPTIME_SLACK_S) < old,
            // First round of this process: compare with what an earlier run persisted.
            None => rebooted_since(base, up, now_s),
        };
        if rebooted {
            let u = up.to_string();
            out.push(event(sensor, now, EventKind::REBOOTED, format!("uptime reset to {up} s"), &[("uptime", &u)]));
        }
        watch.uptime_s = Some(up);
        // Boot time as the gateway clock sees it; rewritten on a reboot, or when it drifted.
        let boot = |u: u64, seen: u64| seen.saturating_sub(u);
        let stale = match (base.uptime_s, base.seen_s) {
            (Some(u), Some(seen)) => boot(up, now_s).abs_diff(boot(u, seen)) > BOOT_DRIFT_REWRITE_S,
            _ => true,
        };
        if rebooted || stale {
            base.uptime_s = Some(up);
            base.seen_s = Some(now_s);
            changed = true;
        }
    }
    if changed {
        watch.baseline_changed = true;
    }
}

/// The bounded queue of events not yet in a batch. Sized by need: usually empty, it holds a burst until
/// the next batch and gives the memory back once drained.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<DeviceEvent>,
    pub dropped: u64,
}

impl Pending {
    pub fn push(&mut self, e: DeviceEvent) {
        if self.queue.len() >= MAX_PENDING {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.queue.push_back(e);
    }

    /// Up to `max` events, oldest first.
    pub fn drain(&mut self, max: usize) -> Vec<DeviceEvent> {
        let n = max.min(self.queue.len());
        let out: Vec<DeviceEvent> = self.queue.drain(..n).collect();
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::baseline::Baseline;
    use crate::devices::hikvision::{Hdd, Status};
    use crate::devices::{Identity, StreamInfo};
    use std::time::Duration;

    fn r(tier: Tier, class: ErrorClass, ts_ms: u64) -> ProbeResult {
        ProbeResult { tier, class, duration: Duration::from_millis(5), ts_ms }
    }

    /// Records `res` and returns the kinds of the events it caused.
    fn feed(s: &mut DeviceState, res: ProbeResult) -> Vec<String> {
        s.record(res);
        after_probe("cam-1", s, res).into_iter().map(|e| e.kind).collect()
    }

    const MIN: u64 = 60_000;

    #[test]
    fn down_needs_two_failures_and_up_is_immediate() {
        let mut s = DeviceState::default();
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Ok, 0)).is_empty(), "baseline");
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Timeout, MIN)).is_empty(), "one failure is not down");
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Ok, 2 * MIN)).is_empty());
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Refused, 3 * MIN)).is_empty());
        assert_eq!(feed(&mut s, r(Tier::Reach, ErrorClass::Timeout, 4 * MIN)), [EventKind::WENT_DOWN]);
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Timeout, 5 * MIN)).is_empty(), "no repeat");
        assert_eq!(feed(&mut s, r(Tier::Reach, ErrorClass::Ok, 6 * MIN)), [EventKind::CAME_BACK]);
        // A fault answer on reach says nothing about up/down.
        assert!(feed(&mut s, r(Tier::Reach, ErrorClass::Parse, 7 * MIN)).is_empty());
    }

    #[test]
    fn a_flapping_device_gives_one_pair_per_hold_period() {
        let mut s = DeviceState::default();
        let mut kinds = Vec::new();
        // Two failures, one success, for an hour, one probe a minute.
        for i in 0..60u64 {
            let class = if i % 3 == 2 { ErrorClass::Ok } else { ErrorClass::Timeout };
            kinds.extend(feed(&mut s, r(Tier::Reach, class, i * MIN)));
        }
        let downs = kinds.iter().filter(|k| *k == EventKind::WENT_DOWN).count();
        assert!((5..=7).contains(&downs), "{downs} downs in an hour: {kinds:?}");
        // Reported states alternate, never two downs in a row.
        assert!(kinds.windows(2).all(|w| w[0] != w[1]), "{kinds:?}");
    }

    #[test]
    fn auth_broken_and_restored() {
        let mut s = DeviceState::default();
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 0)).is_empty());
        assert_eq!(feed(&mut s, r(Tier::Management, ErrorClass::Auth, MIN)), [EventKind::AUTH_BROKEN]);
        assert!(feed(&mut s, r(Tier::Stream, ErrorClass::Auth, 2 * MIN)).is_empty());
        // A timeout says nothing about credentials.
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Timeout, 3 * MIN)).is_empty());
        assert_eq!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 4 * MIN)), [EventKind::AUTH_RESTORED]);
    }

    fn identity(serial: &str, firmware: &str) -> Option<Box<Identity>> {
        Some(Box::new(Identity { serial: serial.into(), firmware: firmware.into(), ..Identity::default() }))
    }

    fn up(s: u64) -> Option<Box<Status>> {
        Some(Box::new(Status { uptime_s: Some(s), ..Status::default() }))
    }

    #[test]
    fn serial_firmware_and_uptime_changes() {
        let mut s = DeviceState { identity: identity("SN1", "V1"), ..DeviceState::default() };
        s.health = up(1000);
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 0)).is_empty(), "baseline");
        s.health = up(1300);
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, MIN)).is_empty());
        s.identity = identity("SN1", "V2");
        s.health = up(40);
        let ev = {
            s.record(r(Tier::Management, ErrorClass::Ok, 2 * MIN));
            after_probe("cam-1", &mut s, r(Tier::Management, ErrorClass::Ok, 2 * MIN))
        };
        let kinds: Vec<_> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, [EventKind::FIRMWARE_CHANGED, EventKind::REBOOTED]);
        let fw = ev.first().and_then(|e| e.attrs.clone()).unwrap();
        assert_eq!((fw["old"].as_str(), fw["new"].as_str()), ("V1", "V2"));
        s.identity = identity("SN2", "V9");
        s.health = up(10);
        let ev = after_probe("cam-1", &mut s, r(Tier::Management, ErrorClass::Ok, 3 * MIN));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].kind, EventKind::REPLACED);
        assert_eq!(ev[0].detail.as_deref(), Some("serial SN1 -> SN2"));
        // Identity unchanged, uptime growing: nothing.
        s.health = up(70);
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 4 * MIN)).is_empty());
    }

    /// One management round at `t_s` (gateway seconds) with the given identity and uptime.
    fn round(s: &mut DeviceState, serial: &str, uptime: u64, t_s: u64) -> Vec<String> {
        s.identity = identity(serial, "V1");
        s.health = up(uptime);
        feed(s, r(Tier::Management, ErrorClass::Ok, t_s * 1000))
    }

    fn restored(b: &Baseline) -> DeviceState {
        let mut s = DeviceState::default();
        s.watch.restore(b.clone());
        s
    }

    #[test]
    fn the_baseline_changes_only_with_the_identity_or_the_boot_time() {
        let t0 = 1_800_000_000;
        let mut s = DeviceState::default();
        assert!(round(&mut s, "SN1", 1000, t0).is_empty(), "first sight is the baseline");
        let b = s.watch.take_changed_baseline().expect("first sight is persisted");
        assert_eq!(b, Baseline { serial: "SN1".into(), firmware: "V1".into(), uptime_s: Some(1000), seen_s: Some(t0) });
        // An hour of rounds with the uptime growing along: nothing to write.
        for i in 1..=12 {
            assert!(round(&mut s, "SN1", 1000 + i * 300, t0 + i * 300).is_empty());
            assert_eq!(s.watch.take_changed_baseline(), None, "round {i}");
        }
        // The device clock ran 61 s slow over the hour: the boot estimate is refreshed, no event.
        assert!(round(&mut s, "SN1", 1000 + 3900 - 61, t0 + 3900).is_empty());
        assert_eq!(s.watch.take_changed_baseline().and_then(|b| b.uptime_s), Some(4839));
        // A reboot is written at once.
        assert_eq!(round(&mut s, "SN1", 20, t0 + 4200), [EventKind::REBOOTED]);
        assert_eq!(s.watch.take_changed_baseline().and_then(|b| b.uptime_s), Some(20));
    }

    #[test]
    fn a_restart_compares_with_the_persisted_baseline() {
        let t0 = 1_800_000_000;
        let b = Baseline { serial: "SN1".into(), firmware: "V1".into(), uptime_s: Some(1000), seen_s: Some(t0) };
        // Same unit, up all along (the agent was down for a day): nothing.
        assert!(round(&mut restored(&b), "SN1", 1000 + 86_400, t0 + 86_400).is_empty());
        // Same unit, a little clock drift over a day: still nothing.
        assert!(round(&mut restored(&b), "SN1", 1000 + 86_400 - 90, t0 + 86_400).is_empty());
        // Replaced while the agent was down: one event, and not also a reboot.
        let mut s = restored(&b);
        assert_eq!(round(&mut s, "SN2", 30, t0 + 600), [EventKind::REPLACED]);
        assert!(round(&mut s, "SN2", 330, t0 + 900).is_empty(), "reported once");
        let after = s.watch.take_changed_baseline().expect("the new unit is persisted");
        assert_eq!((&*after.serial, after.uptime_s, after.seen_s), ("SN2", Some(30), Some(t0 + 600)));
        // ... and the next restart sees the new unit as the baseline.
        assert!(round(&mut restored(&after), "SN2", 930, t0 + 1500).is_empty());
        // Rebooted while the agent was down, even if it has been up longer than it had been before.
        assert_eq!(round(&mut restored(&b), "SN1", 5000, t0 + 86_400), [EventKind::REBOOTED]);
        // The gateway clock is behind the baseline (no time sync yet): only a lower uptime is certain.
        assert!(round(&mut restored(&b), "SN1", 1200, t0 - 3600).is_empty());
        assert_eq!(round(&mut restored(&b), "SN1", 10, t0 - 3600), [EventKind::REBOOTED]);
        // A device that reports no uptime: identity events only.
        let mut s = restored(&Baseline { uptime_s: None, seen_s: None, ..b.clone() });
        s.identity = identity("SN1", "V2");
        assert_eq!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, t0 * 1000)), [EventKind::FIRMWARE_CHANGED]);
    }

    #[test]
    fn hdd_failed_and_restored() {
        let hdd = |st: &str| vec![Hdd { id: "1".into(), status: st.into(), capacity_mb: None, free_mb: None }];
        let mut s = DeviceState { hdds: hdd("ok"), ..DeviceState::default() };
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 0)).is_empty());
        s.hdds = hdd("error");
        assert_eq!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, MIN)), [EventKind::HDD_FAILED]);
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 2 * MIN)).is_empty());
        s.hdds = hdd("ok");
        assert_eq!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 3 * MIN)), [EventKind::HDD_RESTORED]);
    }

    #[test]
    fn stream_lost_by_describe_or_by_a_silent_play() {
        let streams = |main: ErrorClass, sub: ErrorClass| {
            vec![
                StreamInfo { profile: "main".into(), class: Some(main), ..StreamInfo::default() },
                StreamInfo { profile: "sub".into(), class: Some(sub), ..StreamInfo::default() },
            ]
        };
        let mut s = DeviceState { streams: streams(ErrorClass::Ok, ErrorClass::Ok), ..DeviceState::default() };
        assert!(feed(&mut s, r(Tier::Stream, ErrorClass::Ok, 0)).is_empty());
        // DESCRIBE still answers, but the sampled PLAY got no frame.
        assert_eq!(feed(&mut s, r(Tier::Sample, ErrorClass::Timeout, MIN)), [EventKind::STREAM_LOST]);
        assert!(feed(&mut s, r(Tier::Stream, ErrorClass::Ok, 2 * MIN)).is_empty(), "still lost, no repeat");
        assert_eq!(feed(&mut s, r(Tier::Sample, ErrorClass::Ok, 3 * MIN)), [EventKind::STREAM_RESTORED]);
        s.streams = streams(ErrorClass::Ok, ErrorClass::Refused);
        let ev = after_probe("cam-1", &mut s, r(Tier::Stream, ErrorClass::Refused, 4 * MIN));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::STREAM_LOST);
        assert_eq!(ev[0].attrs.as_ref().unwrap()["profile"], "sub");
        // Within the hold a renewed loss after a recovery is not reported again.
        s.streams = streams(ErrorClass::Ok, ErrorClass::Ok);
        assert_eq!(feed(&mut s, r(Tier::Stream, ErrorClass::Ok, 5 * MIN)), [EventKind::STREAM_RESTORED]);
        s.streams = streams(ErrorClass::Ok, ErrorClass::Timeout);
        assert!(feed(&mut s, r(Tier::Stream, ErrorClass::Timeout, 6 * MIN)).is_empty());
        assert_eq!(feed(&mut s, r(Tier::Stream, ErrorClass::Timeout, 4 * MIN + HOLD_MS)), [EventKind::STREAM_LOST]);
        // Auth is its own event, not a lost stream.
        s.streams = streams(ErrorClass::Auth, ErrorClass::Ok);
        let kinds = feed(&mut s, r(Tier::Stream, ErrorClass::Auth, 30 * MIN));
        assert!(!kinds.iter().any(|k| k.starts_with("stream.")), "{kinds:?}");
    }

    #[test]
    fn pending_queue_is_bounded_and_drains_oldest_first() {
        let mut p = Pending::default();
        for i in 0..(MAX_PENDING as u64 + 10) {
            p.push(DeviceEvent::new("cam-1", i, EventKind::WENT_DOWN));
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(p.dropped, 10);
        let first = p.drain(3);
        assert_eq!(first.iter().map(|e| e.ts).collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(p.drain(usize::MAX).len(), MAX_PENDING - 3);
        assert!(p.drain(5).is_empty());
    }
}
