//! Device events (`scs_protocol::EventKind`): transitions the probe results show, detected after each
//! probe from the device's cached state, queued in a bounded queue and drained into the next telemetry
//! batch (where the durable outbox takes over).
//!
//! The first observation of a condition only sets the baseline: an agent restart does not report every
//! camera as "up". Flapping is damped per condition: "down" needs two failed reach probes in a row,
//! and a condition reported bad is not reported bad again within [`HOLD_MS`] of the previous bad report
//! (the recovery is reported at once, a renewed failure waits for the hold to end), so a device that
//! flaps every probe yields at most one lost/restored pair per hold period.

use std::collections::{BTreeMap, HashMap};

use scs_protocol::{DeviceEvent, EventKind};

use super::{DeviceState, ErrorClass, Identity, ProbeResult, Tier};

/// Events waiting for a telemetry batch. A whole batch may carry 256; past this bound the oldest are
/// dropped (and counted) rather than growing memory while the gateway cannot queue.
pub const MAX_PENDING: usize = 256;
/// Minimum time between two "bad" reports of the same condition.
pub const HOLD_MS: u64 = 10 * 60 * 1000;
/// Failed reach probes in a row before a device counts as down.
pub const DOWN_CONFIRM: u32 = 2;
/// Uptime may read a few seconds low between two reads (rounding, clock steps) without a reboot.
const UPTIME_SLACK_S: u64 = 5;

#[derive(Debug, Clone, Default)]
struct Condition {
    /// Last state reported (or the baseline); `true` = bad.
    reported: Option<bool>,
    candidate: Option<bool>,
    streak: u32,
    last_bad_ms: Option<u64>,
}

/// Per-device memory of what has been reported.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    conditions: HashMap<String, Condition>,
    identity: Option<Identity>,
    uptime_s: Option<u64>,
}

impl Watch {
    /// Feeds one observation of `key`; returns the new state when a transition is to be reported.
    fn observe(&mut self, key: &str, bad: bool, confirm: u32, now_ms: u64) -> Option<bool> {
        let c = self.conditions.entry(key.to_owned()).or_default();
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
        match s.watch.observe("down", down, confirm, now) {
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
        match s.watch.observe("auth", r.class == ErrorClass::Auth, 1, now) {
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
        let hdds: Vec<(String, String)> = s.hdds.iter().map(|d| (d.id.clone(), d.status.clone())).collect();
        for (id, status) in hdds {
            let bad = !status.eq_ignore_ascii_case("ok");
            match s.watch.observe(&format!("hdd:{id}"), bad, 1, now) {
                Some(true) => out.push(event(
                    sensor,
                    now,
                    EventKind::HDD_FAILED,
                    format!("disk {id}: {status}"),
                    &[("hdd", &id), ("status", &status)],
                )),
                Some(false) => out.push(event(
                    sensor,
                    now,
                    EventKind::HDD_RESTORED,
                    format!("disk {id}: {status}"),
                    &[("hdd", &id), ("status", &status)],
                )),
                None => {}
            }
        }
    }
    if matches!(r.tier, Tier::Stream | Tier::Sample) && r.class != ErrorClass::Auth {
        // A stream is lost when DESCRIBE fails, or when it answers DESCRIBE but the sampled PLAY of
        // it (the first stream) got no frames: the failure operators care most about.
        let sample = s.last.get(Tier::Sample.as_str()).map(|x| x.class).filter(|c| *c != ErrorClass::Auth);
        let streams: Vec<(String, Option<ErrorClass>)> = s.streams.iter().map(|x| (x.profile.clone(), x.class)).collect();
        for (i, (profile, describe)) in streams.into_iter().enumerate() {
            let Some(describe) = describe.filter(|c| *c != ErrorClass::Auth) else { continue };
            let sampled = if i == 0 { sample.filter(|c| *c != ErrorClass::Ok) } else { None };
            let worst = if describe != ErrorClass::Ok { describe } else { sampled.unwrap_or(ErrorClass::Ok) };
            let bad = worst != ErrorClass::Ok;
            let c = worst.as_str();
            let why = if describe == ErrorClass::Ok && bad { "answers DESCRIBE but sends no frames" } else { "not answering" };
            match s.watch.observe(&format!("stream:{profile}"), bad, 1, now) {
                Some(true) => out.push(event(
                    sensor,
                    now,
                    EventKind::STREAM_LOST,
                    format!("stream {profile}: {why} ({c})"),
                    &[("profile", &profile), ("class", c)],
                )),
                Some(false) => out.push(event(
                    sensor,
                    now,
                    EventKind::STREAM_RESTORED,
                    format!("stream {profile}: frames again"),
                    &[("profile", &profile), ("class", c)],
                )),
                None => {}
            }
        }
    }
    out
}

fn identity_events(sensor: &str, s: &mut DeviceState, now: u64, out: &mut Vec<DeviceEvent>) {
    if let Some(new) = s.identity.clone().filter(|i| !i.serial.is_empty() || !i.firmware.is_empty()) {
        if let Some(old) = &s.watch.identity {
            if !old.serial.is_empty() && !new.serial.is_empty() && old.serial != new.serial {
                out.push(event(
                    sensor,
                    now,
                    EventKind::REPLACED,
                    format!("serial {} -> {}", old.serial, new.serial),
                    &[("old", &old.serial), ("new", &new.serial)],
                ));
                // Another unit: its uptime and firmware are not comparable with the old one's.
                s.watch.uptime_s = None;
            } else if !old.firmware.is_empty() && !new.firmware.is_empty() && old.firmware != new.firmware {
                out.push(event(
                    sensor,
                    now,
                    EventKind::FIRMWARE_CHANGED,
                    format!("firmware {} -> {}", old.firmware, new.firmware),
                    &[("old", &old.firmware), ("new", &new.firmware)],
                ));
            }
        }
        s.watch.identity = Some(new);
    }
    if let Some(up) = s.health.as_ref().and_then(|h| h.uptime_s) {
        if s.watch.uptime_s.is_some_and(|old| up.saturating_add(UPTIME_SLACK_S) < old) {
            let u = up.to_string();
            out.push(event(sensor, now, EventKind::REBOOTED, format!("uptime reset to {up} s"), &[("uptime", &u)]));
        }
        s.watch.uptime_s = Some(up);
    }
}

/// The bounded queue of events not yet in a batch.
#[derive(Debug, Default)]
pub struct Pending {
    queue: heapless::Deque<DeviceEvent, MAX_PENDING>,
    pub dropped: u64,
}

impl Pending {
    pub fn push(&mut self, e: DeviceEvent) {
        if self.queue.is_full() {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        // Cannot fail: a slot was freed above.
        let _ = self.queue.push_back(e);
    }

    /// Up to `max` events, oldest first.
    pub fn drain(&mut self, max: usize) -> Vec<DeviceEvent> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(e) = self.queue.pop_front() else { break };
            out.push(e);
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
    use crate::devices::hikvision::{Hdd, Status};
    use crate::devices::StreamInfo;
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

    fn identity(serial: &str, firmware: &str) -> Option<Identity> {
        Some(Identity { serial: serial.into(), firmware: firmware.into(), ..Identity::default() })
    }

    #[test]
    fn serial_firmware_and_uptime_changes() {
        let mut s = DeviceState { identity: identity("SN1", "V1"), ..DeviceState::default() };
        s.health = Some(Status { uptime_s: Some(1000), ..Status::default() });
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 0)).is_empty(), "baseline");
        s.health = Some(Status { uptime_s: Some(1300), ..Status::default() });
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, MIN)).is_empty());
        s.identity = identity("SN1", "V2");
        s.health = Some(Status { uptime_s: Some(40), ..Status::default() });
        let ev = {
            s.record(r(Tier::Management, ErrorClass::Ok, 2 * MIN));
            after_probe("cam-1", &mut s, r(Tier::Management, ErrorClass::Ok, 2 * MIN))
        };
        let kinds: Vec<_> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, [EventKind::FIRMWARE_CHANGED, EventKind::REBOOTED]);
        let fw = ev.first().and_then(|e| e.attrs.clone()).unwrap();
        assert_eq!((fw["old"].as_str(), fw["new"].as_str()), ("V1", "V2"));
        s.identity = identity("SN2", "V9");
        s.health = Some(Status { uptime_s: Some(10), ..Status::default() });
        let ev = after_probe("cam-1", &mut s, r(Tier::Management, ErrorClass::Ok, 3 * MIN));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].kind, EventKind::REPLACED);
        assert_eq!(ev[0].detail.as_deref(), Some("serial SN1 -> SN2"));
        // Identity unchanged, uptime growing: nothing.
        s.health = Some(Status { uptime_s: Some(70), ..Status::default() });
        assert!(feed(&mut s, r(Tier::Management, ErrorClass::Ok, 4 * MIN)).is_empty());
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
