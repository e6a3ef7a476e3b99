//! wasm glue: the gateway's Durable Object (class `GatewaySession`, one per gateway id). It is the single
//! owner of its gateway's command delivery: it creates commands, cancels them, hands them to one
//! bridging shim at a time (long-poll, [`super::downlink`]), signs them with the cloud key, and expires
//! the ones that never got out (an alarm at the next expiry). The commands themselves live in D1
//! (`super::store`), so the read API and the audit trail are the shim's.
//!
//! Internal requests, from the Worker's own routes only (a Durable Object has no public URL):
//! `POST /create` (JSON [`NewCommand`]), `POST /cancel` (`{"id", "actor"}`), `POST /poll?bridge=&resend=&wait=&base=`
//! (`base`: the Worker's public URL, for the upload grants of artifact-producing commands).
//! Each carries the gateway id in `x-scs-gateway`; the object keeps it in its storage for the alarm.

use std::cell::RefCell;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use serde_json::json;
use worker::{durable_object, Date, Delay, DurableObject, Env, Request, Response, Result, State};

use scs_protocol::UploadGrant;

use super::d1::D1;
use super::downlink::{cancel_message, command_message, encode_messages, is_new_connection, wait_ms, Lease};
use super::registry::COMMANDS;
use super::rows::command_json;
use super::sign::CloudKey;
use super::store::{self, CancelOutcome, NewCommand};
use crate::artifacts::config::mint_upload_grant;
use crate::artifacts::tokens::grant_horizon_ms;
use crate::http::ApiError;

pub const GATEWAY_HEADER: &str = "x-scs-gateway";
/// Actor of the transitions the session makes itself (as the shim writes "shim").
const ACTOR: &str = "worker";

#[durable_object]
pub struct GatewaySession {
    state: State,
    env: Env,
    /// Serialises this object's own reads-then-writes (create, cancel, delivery, expiry).
    lock: async_lock::Mutex<()>,
    /// Polls waiting for work.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    lease: RefCell<Lease>,
    /// The connection (`boot:ts`) whose re-send was done; memory only, so a restarted object re-sends
    /// once more, which the agent's once-per-id journal absorbs.
    resent: RefCell<Option<String>>,
    /// Cancels to send with the next delivery.
    cancels: RefCell<Vec<String>>,
}

fn now() -> i64 {
    Date::now().as_millis() as i64
}

fn error(status: u16, msg: impl Into<String>) -> Result<Response> {
    Ok(Response::from_json(&json!({"error": msg.into()}))?.with_status(status))
}

impl GatewaySession {
    fn db(&self) -> Result<D1> {
        Ok(D1(self.env.d1("DB")?))
    }

    async fn gateway(&self, req: Option<&Request>) -> Result<String> {
        if let Some(gw) = req.and_then(|r| r.headers().get(GATEWAY_HEADER).ok().flatten()) {
            if self.state.storage().get::<String>("gateway").await.ok().flatten().as_deref() != Some(gw.as_str()) {
                self.state.storage().put("gateway", gw.clone()).await?;
            }
            return Ok(gw);
        }
        self.state.storage().get::<String>("gateway").await?.ok_or_else(|| worker::Error::RustError("gateway id unknown".into()))
    }

    fn wake(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    async fn arm_expiry(&self, gateway: &str) -> Result<()> {
        let next = store::next_expiry(&self.db()?, gateway).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        match next {
            Some(at) => {
                self.state.storage().set_alarm(Duration::from_millis(u64::try_from((at - now()).max(0)).unwrap_or(0) + 50)).await
            }
            None => self.state.storage().delete_alarm().await,
        }
    }

    async fn create(&self, mut req: Request, gateway: &str) -> Result<Response> {
        let new: NewCommand = req.json().await?;
        if new.gateway_id != gateway {
            return error(400, "gateway mismatch");
        }
        let _g = self.lock.lock().await;
        let row = match store::create(&self.db()?, &new).await {
            Ok(r) => r,
            Err(e) => return error(500, format!("store: {e}")),
        };
        self.arm_expiry(gateway).await?;
        self.wake();
        Response::from_json(&command_json(&row, None)).map(|r| r.with_status(201))
    }

    async fn cancel(&self, mut req: Request, gateway: &str) -> Result<Response> {
        #[derive(serde::Deserialize)]
        struct Body {
            id: String,
            actor: String,
        }
        let b: Body = req.json().await?;
        let _g = self.lock.lock().await;
        let outcome = match store::request_cancel(&self.db()?, &b.id, &b.actor, now()).await {
            Ok(o) => o,
            Err(e) => return error(500, format!("store: {e}")),
        };
        match outcome {
            CancelOutcome::NotFound => error(404, "no such command"),
            CancelOutcome::AlreadyFinished(row) => {
                error(409, format!("command {} already finished ({})", row.id, row.state.as_str()))
            }
            CancelOutcome::Cancelled(row) => Response::from_json(&command_json(&row, None)),
            CancelOutcome::Requested(row) => {
                if row.gateway_id == gateway {
                    self.cancels.borrow_mut().push(row.id.clone());
                    self.wake();
                }
                Response::from_json(&command_json(&row, None))
            }
        }
    }

    /// An upload grant for a command whose registry entry produces an artifact (`None` for the others,
    /// and, with an error in the log, when the Worker has no artifact signing key).
    fn upload_grant(&self, row: &store::CommandRow, base: Option<&str>, now: i64) -> Option<UploadGrant> {
        let spec = COMMANDS.iter().find(|c| c.command_type == row.command_type)?;
        if !spec.artifact {
            return None;
        }
        let made = base
            .filter(|b| !b.is_empty())
            .ok_or_else(|| ApiError::internal("no public URL for the upload grant"))
            .and_then(|base| {
                let valid = grant_horizon_ms(row.expires_at, row.timeout_secs, now);
                mint_upload_grant(&self.env, base, &row.id, u64::try_from(now).unwrap_or(0), valid)
            });
        match made {
            Ok(g) => Some(g),
            Err(e) => {
                worker::console_error!("command {} ({}): no upload grant: {}", row.id, row.command_type, e.message);
                None
            }
        }
    }

    /// What `bridge` should publish now; marks commands delivered.
    async fn take(
        &self,
        gateway: &str,
        bridge: &str,
        resend_key: Option<&str>,
        base: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let _g = self.lock.lock().await;
        let t = now();
        if !self.lease.borrow_mut().claim(bridge, t) {
            return Ok(Vec::new());
        }
        let db = self.db()?;
        let resend = is_new_connection(self.resent.borrow().as_deref(), resend_key);
        let sql = |e: store::CommandStoreError| worker::Error::RustError(e.to_string());
        let rows = store::pending_for(&db, gateway, resend, t).await.map_err(sql)?;
        let key = CloudKey::from_secret(&self.env.secret("CLOUD_SIGNING_KEY")?.to_string())
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut out = Vec::new();
        for row in rows {
            store::mark_delivered(&db, &row, ACTOR, t).await.map_err(sql)?;
            let (topic, payload) = command_message(&row, self.upload_grant(&row, base, t));
            let signed = key.sign_downlink(&topic, &payload);
            out.push((topic, signed));
        }
        let mut cancels: Vec<String> = self.cancels.borrow_mut().drain(..).collect();
        if resend {
            cancels.extend(store::pending_cancels(&db, gateway).await.map_err(sql)?.into_iter().map(|r| r.id));
            *self.resent.borrow_mut() = resend_key.map(str::to_owned);
        }
        cancels.dedup();
        for id in cancels {
            let (topic, payload) = cancel_message(gateway, &id);
            out.push((topic.clone(), key.sign_downlink(&topic, &payload)));
        }
        Ok(out)
    }

    async fn poll(&self, req: Request, gateway: &str) -> Result<Response> {
        let url = req.url()?;
        let q = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        let bridge = q("bridge").unwrap_or_default();
        let resend = q("resend");
        let wait = wait_ms(q("wait").as_deref());
        let base = q("base");
        let mut out = self.take(gateway, &bridge, resend.as_deref(), base.as_deref()).await?;
        if out.is_empty() && wait > 0 {
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push(tx);
            let timer = Delay::from(Duration::from_millis(u64::try_from(wait).unwrap_or(0)));
            if let Either::Left(_) = select(rx, timer).await {
                out = self.take(gateway, &bridge, None, base.as_deref()).await?;
            }
        }
        self.lease.borrow_mut().renew(&bridge, now());
        let mut resp = Response::from_bytes(encode_messages(&out))?;
        resp.headers_mut().set("content-type", "application/cbor")?;
        Ok(resp)
    }
}

impl DurableObject for GatewaySession {
    fn new(state: State, env: Env) -> Self {
        GatewaySession {
            state,
            env,
            lock: async_lock::Mutex::new(()),
            waiters: RefCell::new(Vec::new()),
            lease: RefCell::new(Lease::default()),
            resent: RefCell::new(None),
            cancels: RefCell::new(Vec::new()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let gateway = self.gateway(Some(&req)).await?;
        let path = req.url()?.path().to_owned();
        match path.as_str() {
            "/create" => self.create(req, &gateway).await,
            "/cancel" => self.cancel(req, &gateway).await,
            "/poll" => self.poll(req, &gateway).await,
            _ => error(404, "no such session operation"),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let gateway = self.gateway(None).await?;
        {
            let _g = self.lock.lock().await;
            match store::expire_due(&self.db()?, &gateway, ACTOR, now()).await {
                Ok(rows) => {
                    for r in rows {
                        worker::console_log!("command {} ({}) for {gateway} expired undelivered", r.id, r.command_type);
                    }
                }
                Err(e) => worker::console_error!("command expiry for {gateway}: {e}"),
            }
        }
        self.arm_expiry(&gateway).await?;
        Response::ok("")
    }
}
