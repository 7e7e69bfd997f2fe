//! The case desk's logic with the store: confirm an alert into a case
//! (merging with its neighbours), merge into an existing case, dismiss
//! with a reason, auto-triage new alerts (merge into open cases,
//! auto-dispatch), apply dispute-system status callbacks, and build the
//! wire [`Case`] that is dispatched (frozen into the outbox).
//!
//! Evidence: each alert's snapshot (a signed link, or inline as a data
//! URL) and its clip if its drone was recording (always a signed link
//! `{public_url}evidence/{case}/{alert}.mp4`: video is never inlined),
//! each with its SHA-256. A clip finishes `post_alert_s` after its alert,
//! often after the case was made and sent: [`Desk::clip_recorded`] then
//! stores it and queues the case again as a new outbox revision (its own
//! idempotency key, `{case_id}.rev{n}`), in one transaction, so the
//! dispute centre gets the clip too.
//!
//! Every operation is one store transaction, so a crash leaves either all
//! of it or none (a confirmed case without its outbox entry cannot exist).

use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tiancha_protocol::{
    Alert, Case, CaseStatus, CaseStatusUpdate, Evidence, GeoPoint, SCHEMA_VERSION,
};
use uuid::Uuid;

use crate::cases::{self, alert_place, CaseRules};
use crate::config::{Config, EvidenceMode, RouteFormat};
use crate::dispatch::cap;
use crate::grid::GridIndex;
use crate::store::cases::{
    add_timeline, advance_status, insert_case, set_kv, set_triage, status_rank, update_case_merge,
    CaseRow, NewCase,
};
use crate::store::clips::{put_clip, ClipRow};
use crate::store::outbox::{enqueue, revise};
use crate::store::{Store, StoreError, LOCK_DESK};

const CURSOR_KEY: &str = "triage_cursor";

/// What a desk operation changed (for the live feed and the dispatcher).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changed {
    pub cases: Vec<Uuid>,
    pub alerts: Vec<Uuid>,
    /// Outbox entries were added.
    pub enqueued: bool,
}

impl Changed {
    fn add(&mut self, o: Changed) {
        self.cases.extend(o.cases);
        self.alerts.extend(o.alerts);
        self.enqueued |= o.enqueued;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

/// The desk: rules, grid and config, shared by HTTP handlers and workers.
pub struct Desk {
    pub rules: CaseRules,
    pub grid: Arc<GridIndex>,
    pub cfg: Arc<Config>,
    /// Key for evidence links (per installation, kept in the store).
    pub evidence_key: Vec<u8>,
}

/// What an evidence link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceFile {
    /// `{alert}.jpg`
    Snapshot,
    /// `{alert}.mp4`
    Clip,
}

impl EvidenceFile {
    fn extension(self) -> &'static str {
        match self {
            EvidenceFile::Snapshot => "jpg",
            EvidenceFile::Clip => "mp4",
        }
    }
}

impl Desk {
    /// The signature of an evidence link, valid until `exp_unix_s`; a
    /// snapshot link's does not open the clip and vice versa.
    fn link_sig(
        &self,
        kind: EvidenceFile,
        case_id: Uuid,
        alert_id: Uuid,
        exp_unix_s: i64,
    ) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.evidence_key).expect("any key length");
        m.update(format!("{case_id}/{alert_id}/{exp_unix_s}").as_bytes());
        if kind == EvidenceFile::Clip {
            m.update(b"/clip");
        }
        hex::encode(m.finalize().into_bytes())
    }

    /// The evidence link of an alert's snapshot or clip in a case
    /// (absolute, on the station's public URL), valid for
    /// `evidence_link_ttl_h`.
    pub fn evidence_url(
        &self,
        kind: EvidenceFile,
        case_id: Uuid,
        alert_id: Uuid,
        now: i64,
    ) -> String {
        let exp = now / 1000 + self.cfg.dispatch.evidence_link_ttl_h * 3600;
        format!(
            "{}evidence/{case_id}/{alert_id}.{}?exp={exp}&sig={}",
            self.cfg.public_url(),
            kind.extension(),
            self.link_sig(kind, case_id, alert_id, exp)
        )
    }

    pub fn evidence_ok(
        &self,
        kind: EvidenceFile,
        case_id: Uuid,
        alert_id: Uuid,
        exp: i64,
        sig: &str,
        now: i64,
    ) -> bool {
        exp >= now / 1000 && crate::auth::ct_eq(&self.link_sig(kind, case_id, alert_id, exp), sig)
    }

    /// The case as dispute systems receive it.
    pub fn wire_case(&self, store: &Store, row: &CaseRow, now: i64) -> Result<Case, StoreError> {
        let alert_ids = store.case_alert_ids(row.case_id)?;
        self.wire_case_with(store, row, alert_ids, None, now)
    }

    /// [`Desk::wire_case`] for a case whose alerts are known (a case not
    /// yet committed: its outbox entry goes in the same transaction), with
    /// a clip not yet committed either (`new_clip`, same reason).
    fn wire_case_with(
        &self,
        store: &Store,
        row: &CaseRow,
        alert_ids: Vec<Uuid>,
        new_clip: Option<&ClipRow>,
        now: i64,
    ) -> Result<Case, StoreError> {
        let mut evidence = vec![];
        for a in &alert_ids {
            let Some(sha) = store.snapshot_sha256(*a)? else {
                continue;
            };
            let url = match self.cfg.dispatch.evidence {
                EvidenceMode::Url => {
                    self.evidence_url(EvidenceFile::Snapshot, row.case_id, *a, now)
                }
                EvidenceMode::Inline => match store.snapshot(*a)? {
                    Some((_, _, jpeg)) => format!(
                        "data:image/jpeg;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(jpeg)
                    ),
                    None => continue,
                },
            };
            evidence.push(Evidence {
                kind: "snapshot".into(),
                url,
                mime: "image/jpeg".into(),
                sha256: sha,
                alert_id: Some(*a),
            });
        }
        for a in &alert_ids {
            let clip = match new_clip {
                Some(c) if c.alert_id == *a => Some(c.clone()),
                _ => store.clip(*a)?,
            };
            if let Some(c) = clip {
                evidence.push(Evidence {
                    kind: "clip".into(),
                    url: self.evidence_url(EvidenceFile::Clip, row.case_id, *a, now),
                    mime: "video/mp4".into(),
                    sha256: c.sha256,
                    alert_id: Some(*a),
                });
            }
        }
        Ok(Case {
            schema: SCHEMA_VERSION,
            case_id: row.case_id,
            source: "drone".into(),
            category: row.category,
            priority: row.priority,
            location: row.location,
            grid: row.grid.clone(),
            t_start_unix_ms: row.t_start_unix_ms,
            t_end_unix_ms: row.t_end_unix_ms,
            title: row.title.clone(),
            description: row.description.clone(),
            evidence,
            alert_ids,
            confirmed_by: row.confirmed_by.clone(),
            route: row.route.clone().unwrap_or_default(),
            status: row.status,
        })
    }

    /// The body and content type for a route (revision 0: the case as
    /// first sent; n: its n-th update).
    pub fn body_for(&self, case: &Case, revision: i64, now: i64) -> (String, Vec<u8>) {
        let fmt = self
            .cfg
            .dispatch
            .routes
            .iter()
            .find(|r| r.name == case.route)
            .map(|r| r.format)
            .unwrap_or_default();
        match fmt {
            RouteFormat::Json => (
                "application/json".into(),
                serde_json::to_vec(case).expect("serialisable"),
            ),
            RouteFormat::Cap => (
                "application/cap+xml".into(),
                cap::render_revision(
                    case,
                    &format!("tiancha@{}", self.cfg.instance),
                    now,
                    revision,
                )
                .into_bytes(),
            ),
        }
    }

    fn description(alerts: &[Alert]) -> String {
        let mut lines: Vec<String> = alerts
            .iter()
            .map(|a| {
                format!(
                    "{} · drone {} · {} ({:.0}% confidence){}",
                    crate::dispatch::cap::cap_time(a.t_unix_ms),
                    a.drone_id,
                    if a.rule.detail.is_empty() {
                        &a.rule.name
                    } else {
                        &a.rule.detail
                    },
                    a.confidence * 100.0,
                    a.zone
                        .as_ref()
                        .map(|z| format!(" · zone {z}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        lines.truncate(50);
        lines.join("\n")
    }

    /// Confirm an alert: it joins the open case it merges into, or a new
    /// case is made with it and the untriaged alerts that merge with it.
    /// A new case is dispatched to its route at once.
    pub fn confirm(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        actor: &str,
        now: i64,
    ) -> Result<(Uuid, Changed), DeskError> {
        store.serialized(LOCK_DESK, |st| {
            self.confirm_locked(st, alert_id, actor, now)
        })
    }

    fn confirm_locked(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        actor: &str,
        now: i64,
    ) -> Result<(Uuid, Changed), DeskError> {
        let alert = store
            .alert(alert_id)?
            .ok_or_else(|| DeskError::NotFound(format!("no alert {alert_id}")))?;
        if let Some(("case", Some(c))) = store
            .triage_of(alert_id)?
            .as_ref()
            .map(|(s, c)| (s.as_str(), *c))
        {
            return Err(DeskError::Conflict(format!(
                "alert {alert_id} is already in case {c}"
            )));
        }
        self.make_or_merge(store, alert, Some(actor), now)
    }

    fn make_or_merge(
        &self,
        store: &mut Store,
        alert: Alert,
        actor: Option<&str>,
        now: i64,
    ) -> Result<(Uuid, Changed), DeskError> {
        let Some(place) = alert_place(&alert) else {
            return Err(DeskError::Conflict(format!(
                "alert {} has no position (no geotag, no observer): it cannot become a case",
                alert.alert_id
            )));
        };
        let w = self.rules.merge_window_ms();
        let open = store.open_cases(alert.t_unix_ms - w)?;
        if let Some(c) = self.rules.merges_into(&alert, &open) {
            let id = c.case_id;
            let ch = self.merge_alerts(
                store,
                id,
                std::slice::from_ref(&alert),
                actor.unwrap_or("auto-merge"),
                now,
            )?;
            return Ok((id, ch));
        }
        let mut alerts: Vec<Alert> = store
            .untriaged_alerts(alert.category, alert.t_unix_ms - w, alert.t_unix_ms + w)?
            .into_iter()
            .filter(|o| o.alert_id != alert.alert_id && self.rules.alerts_merge(&alert, o))
            .collect();
        alerts.push(alert.clone());
        alerts.sort_by_key(|a| (a.t_unix_ms, a.alert_id));
        let counts: Vec<u32> = alerts.iter().filter_map(|a| a.person_count).collect();
        let max_count = counts.iter().copied().max();
        let grid = self.grid.lookup(place.lat_deg, place.lon_deg).cloned();
        let (priority, reasons) = self.rules.priority(alert.category, place, &counts);
        let route = self.cfg.route_for(alert.category).map(|r| r.name.clone());
        let case_id = Uuid::now_v7();
        let confirmed_by = match actor {
            Some(a) => a.to_string(),
            None => "auto-dispatch".to_string(),
        };
        let new = NewCase {
            case_id,
            category: alert.category,
            priority,
            priority_reasons: reasons,
            status: CaseStatus::Confirmed,
            location: place,
            grid: grid.clone(),
            t_start_unix_ms: alerts
                .iter()
                .map(|a| a.t_first_unix_ms)
                .min()
                .unwrap_or(alert.t_unix_ms),
            t_end_unix_ms: alerts
                .iter()
                .map(|a| a.t_unix_ms)
                .max()
                .unwrap_or(alert.t_unix_ms),
            title: cases::title(alert.category, max_count, grid.as_ref()),
            description: Self::description(&alerts),
            confirmed_by: Some(confirmed_by.clone()),
            route: route.clone(),
            max_person_count: max_count,
        };
        let ch = Changed {
            cases: vec![case_id],
            alerts: alerts.iter().map(|a| a.alert_id).collect(),
            enqueued: route.is_some(),
        };
        // The dispatched body, made before the transaction so that the case
        // and its outbox entry commit together: a crash between the two
        // left a confirmed case that was never sent (found by the chaos
        // test, a ground station SIGKILLed mid-ingest).
        let outbox = match &route {
            Some(r) => {
                let row = CaseRow {
                    case_id,
                    category: new.category,
                    priority: new.priority,
                    priority_reasons: new.priority_reasons.clone(),
                    status: new.status,
                    location: new.location,
                    grid: new.grid.clone(),
                    t_start_unix_ms: new.t_start_unix_ms,
                    t_end_unix_ms: new.t_end_unix_ms,
                    title: new.title.clone(),
                    description: new.description.clone(),
                    confirmed_by: new.confirmed_by.clone(),
                    route: new.route.clone(),
                    max_person_count: new.max_person_count,
                    created_unix_ms: now,
                    updated_unix_ms: now,
                    alert_count: alerts.len() as u32,
                    delivery: None,
                };
                // The order `case_alert_ids` gives: by time, then id.
                let ids = alerts.iter().map(|a| a.alert_id).collect();
                let wire = self.wire_case_with(store, &row, ids, None, now)?;
                let (ct, body) = self.body_for(&wire, 0, now);
                Some((r.clone(), ct, body))
            }
            None => None,
        };
        store.with_tx(|tx| {
            insert_case(tx, &new, now)?;
            if let Some((r, ct, body)) = &outbox {
                enqueue(tx, case_id, r, ct, body, now)?;
            }
            add_timeline(
                tx,
                case_id,
                new.t_start_unix_ms,
                "status",
                Some(CaseStatus::Raised),
                &format!("drone {}", alert.drone_id),
                &format!("{} alert(s)", alerts.len()),
                None,
            )?;
            add_timeline(
                tx,
                case_id,
                now,
                "status",
                Some(CaseStatus::Confirmed),
                &confirmed_by,
                if actor.is_some() {
                    ""
                } else {
                    "auto-dispatch rule"
                },
                None,
            )?;
            for a in &alerts {
                set_triage(
                    tx,
                    a.alert_id,
                    "case",
                    Some(case_id),
                    "",
                    &confirmed_by,
                    now,
                )?;
            }
            if route.is_none() {
                add_timeline(
                    tx,
                    case_id,
                    now,
                    "dispatch",
                    None,
                    "ground station",
                    &format!(
                        "no dispatch route for category {}; not sent",
                        alert.category
                    ),
                    None,
                )?;
            }
            Ok(())
        })?;
        Ok((case_id, ch))
    }

    /// Add alerts to a case (merge), updating its window and priority.
    pub fn merge_alerts(
        &self,
        store: &mut Store,
        case_id: Uuid,
        alerts: &[Alert],
        actor: &str,
        now: i64,
    ) -> Result<Changed, DeskError> {
        let row = store
            .case(case_id)?
            .ok_or_else(|| DeskError::NotFound(format!("no case {case_id}")))?;
        if let Some(a) = alerts.iter().find(|a| a.category != row.category) {
            return Err(DeskError::Invalid(format!(
                "alert {} is {} but case {case_id} is {}: only alerts of the same category merge",
                a.alert_id, a.category, row.category
            )));
        }
        let mut all: Vec<Alert> = vec![];
        for id in store.case_alert_ids(case_id)? {
            if let Some(a) = store.alert(id)? {
                all.push(a);
            }
        }
        all.extend(alerts.iter().cloned());
        all.sort_by_key(|a| (a.t_unix_ms, a.alert_id));
        all.dedup_by_key(|a| a.alert_id);
        let counts: Vec<u32> = all.iter().filter_map(|a| a.person_count).collect();
        let max_count = counts.iter().copied().max();
        let (p, reasons) = self.rules.priority(row.category, row.location, &counts);
        let p = p.max(row.priority);
        let t_start = all
            .iter()
            .map(|a| a.t_first_unix_ms)
            .min()
            .unwrap_or(row.t_start_unix_ms);
        let t_end = all
            .iter()
            .map(|a| a.t_unix_ms)
            .max()
            .unwrap_or(row.t_end_unix_ms);
        let title = cases::title(row.category, max_count, row.grid.as_ref());
        store.with_tx(|tx| {
            for a in alerts {
                set_triage(tx, a.alert_id, "case", Some(case_id), "", actor, now)?;
                add_timeline(
                    tx,
                    case_id,
                    now,
                    "alert_merged",
                    None,
                    actor,
                    &format!(
                        "alert {} from drone {}{}",
                        a.alert_id,
                        a.drone_id,
                        a.person_count
                            .map(|n| format!(", {n} people"))
                            .unwrap_or_default()
                    ),
                    None,
                )?;
            }
            let reasons = if reasons.is_empty() {
                row.priority_reasons.clone()
            } else {
                reasons.clone()
            };
            update_case_merge(
                tx, case_id, t_start, t_end, p, &reasons, max_count, &title, now,
            )
        })?;
        Ok(Changed {
            cases: vec![case_id],
            alerts: alerts.iter().map(|a| a.alert_id).collect(),
            enqueued: false,
        })
    }

    /// An operator merges an alert into a case they chose.
    pub fn merge(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        case_id: Uuid,
        actor: &str,
        now: i64,
    ) -> Result<Changed, DeskError> {
        store.serialized(LOCK_DESK, |st| {
            self.merge_locked(st, alert_id, case_id, actor, now)
        })
    }

    fn merge_locked(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        case_id: Uuid,
        actor: &str,
        now: i64,
    ) -> Result<Changed, DeskError> {
        let alert = store
            .alert(alert_id)?
            .ok_or_else(|| DeskError::NotFound(format!("no alert {alert_id}")))?;
        if let Some(("case", Some(c))) = store
            .triage_of(alert_id)?
            .as_ref()
            .map(|(s, c)| (s.as_str(), *c))
        {
            return Err(DeskError::Conflict(format!(
                "alert {alert_id} is already in case {c}"
            )));
        }
        self.merge_alerts(store, case_id, &[alert], actor, now)
    }

    /// Dismiss an alert with a reason (kept for model improvement).
    pub fn dismiss(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<Changed, DeskError> {
        store.serialized(LOCK_DESK, |st| {
            self.dismiss_locked(st, alert_id, reason, actor, now)
        })
    }

    fn dismiss_locked(
        &self,
        store: &mut Store,
        alert_id: Uuid,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<Changed, DeskError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(DeskError::Invalid(
                "a dismissal needs a reason of 1 to 500 characters".into(),
            ));
        }
        if store.alert(alert_id)?.is_none() {
            return Err(DeskError::NotFound(format!("no alert {alert_id}")));
        }
        if let Some(("case", Some(c))) = store
            .triage_of(alert_id)?
            .as_ref()
            .map(|(s, c)| (s.as_str(), *c))
        {
            return Err(DeskError::Conflict(format!(
                "alert {alert_id} is in case {c}; it cannot be dismissed"
            )));
        }
        store.with_tx(|tx| set_triage(tx, alert_id, "dismissed", None, reason, actor, now))?;
        Ok(Changed {
            alerts: vec![alert_id],
            ..Default::default()
        })
    }

    /// Auto-triage alerts stored since the last run: merge into open cases,
    /// auto-dispatch by rule. Durable: a cursor in the store says how far
    /// it got.
    pub fn auto_triage(&self, store: &mut Store, now: i64) -> Result<Changed, DeskError> {
        store.serialized(LOCK_DESK, |st| self.auto_triage_locked(st, now))
    }

    fn auto_triage_locked(&self, store: &mut Store, now: i64) -> Result<Changed, DeskError> {
        let mut cursor: i64 = store
            .kv(CURSOR_KEY)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut ch = Changed::default();
        loop {
            let batch = store.alerts_after(cursor, 200)?;
            if batch.is_empty() {
                break;
            }
            for (rowid, alert) in batch {
                cursor = rowid;
                if store.triage_of(alert.alert_id)?.is_some() {
                    continue;
                }
                let w = self.rules.merge_window_ms();
                let open = store.open_cases(alert.t_unix_ms - w)?;
                if let Some(c) = self.rules.merges_into(&alert, &open) {
                    let id = c.case_id;
                    ch.add(self.merge_alerts(
                        store,
                        id,
                        std::slice::from_ref(&alert),
                        "auto-merge",
                        now,
                    )?);
                } else if self.rules.auto_dispatch(&alert) && alert_place(&alert).is_some() {
                    let (_, o) = self.make_or_merge(store, alert, None, now)?;
                    ch.add(o);
                }
            }
            store.with_tx(|tx| set_kv(tx, CURSOR_KEY, &cursor.to_string()))?;
        }
        Ok(ch)
    }

    /// A signed status callback from the route's dispute system.
    pub fn apply_callback(
        &self,
        store: &mut Store,
        route: &str,
        u: &CaseStatusUpdate,
        now: i64,
    ) -> Result<(CaseStatus, bool), DeskError> {
        let row = store
            .case(u.case_id)?
            .ok_or_else(|| DeskError::NotFound(format!("no case {}", u.case_id)))?;
        if row.route.as_deref() != Some(route) {
            return Err(DeskError::Conflict(format!(
                "case {} was not sent to route `{route}`",
                u.case_id
            )));
        }
        if status_rank(u.status) < status_rank(CaseStatus::Received)
            && u.status != CaseStatus::Dispatched
        {
            return Err(DeskError::Invalid(format!(
                "a dispute system cannot set status `{}` (received, mediating, resolved, closed or rejected)",
                u.status.as_str()
            )));
        }
        let actor = if u.handler.is_empty() {
            format!("{route} (dispute system)")
        } else {
            format!("{} @ {route}", u.handler)
        };
        let dedup = format!(
            "cb:{}:{}:{}:{}",
            u.case_id,
            u.status.as_str(),
            u.t_unix_ms,
            crate::auth::token_hash(&u.note)
        );
        let out = store.with_tx(|tx| {
            let new = add_timeline(
                tx,
                u.case_id,
                u.t_unix_ms,
                "status",
                Some(u.status),
                &actor,
                &u.note,
                Some(&dedup),
            )?;
            let s = advance_status(tx, u.case_id, u.status, now)?;
            Ok((s, new))
        })?;
        Ok(out)
    }

    /// A person at the desk moves a case (dispute centre without an
    /// integrated system, or closing after review) or adds a note.
    pub fn desk_update(
        &self,
        store: &mut Store,
        case_id: Uuid,
        status: Option<CaseStatus>,
        note: &str,
        actor: &str,
        now: i64,
    ) -> Result<CaseStatus, DeskError> {
        if note.chars().count() > 10_000 {
            return Err(DeskError::Invalid(
                "a note may have at most 10000 characters".into(),
            ));
        }
        if status.is_none() && note.trim().is_empty() {
            return Err(DeskError::Invalid("give a status, a note or both".into()));
        }
        if store.case(case_id)?.is_none() {
            return Err(DeskError::NotFound(format!("no case {case_id}")));
        }
        Ok(store.with_tx(|tx| match status {
            Some(s) => {
                add_timeline(tx, case_id, now, "status", Some(s), actor, note, None)?;
                advance_status(tx, case_id, s, now)
            }
            None => {
                add_timeline(tx, case_id, now, "note", None, actor, note, None)?;
                advance_status(tx, case_id, CaseStatus::Raised, now)
            }
        })?)
    }

    /// A clip of an alert was recorded: keep it, and if the alert is in a
    /// case with a route, queue the case again with the clip as evidence
    /// (a new outbox revision: a delivered case is sent again, a pending
    /// one sends the new body at its next attempt). One transaction, so a
    /// crash leaves either the clip and the update or neither. Recording
    /// the same clip again changes nothing. Returns the case whose record
    /// changed and the revision queued (None: the case has no delivery).
    pub fn clip_recorded(
        &self,
        store: &mut Store,
        clip: &ClipRow,
        now: i64,
    ) -> Result<Option<(Uuid, Option<i64>)>, DeskError> {
        store.serialized(LOCK_DESK, |st| {
            if st.clip(clip.alert_id)?.as_ref() == Some(clip) {
                return Ok(None);
            }
            let case = match st.triage_of(clip.alert_id)? {
                Some((s, Some(c))) if s == "case" => st.case(c)?,
                _ => None,
            };
            let update = match &case {
                Some(row) if row.route.is_some() => {
                    let ids = st.case_alert_ids(row.case_id)?;
                    let wire = self.wire_case_with(st, row, ids, Some(clip), now)?;
                    // Revisions change only here, under the desk lock.
                    let next = st.outbox_revision(row.case_id)?.map_or(0, |r| r + 1);
                    Some(self.body_for(&wire, next, now))
                }
                _ => None,
            };
            let secs = (clip.end_unix_ms - clip.start_unix_ms) as f64 / 1000.0;
            let out = st.with_tx(|tx| {
                if !put_clip(tx, clip)? {
                    return Ok(None);
                }
                let Some(row) = &case else { return Ok(None) };
                let rev = match &update {
                    Some((ct, body)) => revise(tx, row.case_id, ct, body, now)?,
                    None => None,
                };
                add_timeline(
                    tx,
                    row.case_id,
                    now,
                    "evidence",
                    None,
                    "ground station",
                    &format!(
                        "clip of alert {} recorded ({secs:.1} s, {} frames, sha256 {}){}",
                        clip.alert_id,
                        clip.frames,
                        clip.sha256,
                        match rev {
                            Some(r) => format!("; case queued again with it (revision {r})"),
                            None => String::new(),
                        }
                    ),
                    Some(&format!("clip:{}:{}", clip.alert_id, clip.sha256)),
                )?;
                Ok(Some((row.case_id, rev)))
            })?;
            Ok(out)
        })
    }

    /// The location of a case for map use.
    pub fn place(row: &CaseRow) -> GeoPoint {
        row.location
    }
}

/// The station's clip recorder writes into the store and updates the
/// clip's case (see [`Desk::clip_recorded`]).
impl crate::video::clip::ClipSink for crate::http::AppState {
    fn data_dir(&self) -> std::path::PathBuf {
        self.cfg.data_dir.clone()
    }

    async fn recorded(&self, clip: ClipRow) {
        let desk = self.desk.clone();
        let (alert, sha) = (clip.alert_id, clip.sha256.clone());
        let now = tiancha_protocol::unix_ms(std::time::SystemTime::now());
        match crate::http::blocking(self, move |st| desk.clip_recorded(st, &clip, now)).await {
            Ok(Some((case_id, rev))) => {
                tracing::info!(%alert, %case_id, revision = ?rev, sha256 = %sha, "alert clip added to its case");
                if rev.is_some() {
                    self.dispatch_wake.notify_one();
                }
                crate::http::live::announce(
                    self,
                    &Changed {
                        cases: vec![case_id],
                        ..Default::default()
                    },
                );
            }
            Ok(None) => tracing::info!(%alert, sha256 = %sha, "alert clip recorded"),
            Err(e) => tracing::warn!(%alert, error = %e.0, "cannot record an alert clip"),
        }
    }
}
