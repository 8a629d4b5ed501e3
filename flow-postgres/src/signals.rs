//! Signals (migration 10 explains the rest). A signal's name is a meeting point
//! between the one run that waits on it and its senders: both lock the name (a
//! transaction-scoped advisory lock) before they look at the other's rows, so
//! whichever comes second sees what the first committed. A park takes its locks
//! first in its commit's transaction, before any run row; a sender takes its lock,
//! then the waiting run's row: one order, no deadlock.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use flow_core::store::{
    Lease, NewSignal, Next, SIGNAL_WAIT, SignalHolder, SignalReceipt, Transition, signal_held_error,
};
use flow_core::{Error, Now, RunId};

use crate::db_error;

/// The first key of the advisory locks on signal names (`flow` in ASCII); the
/// second is the name's hash. Two-key locks never meet the one-key locks of the
/// migrations or of the application.
const LOCK_CLASS: i32 = 0x666c_6f77;

/// Whether a transition parks on a signal.
pub(crate) fn parks_on_signals(t: &Transition) -> bool {
    matches!(&t.next, Next::Park(park) if !park.wake.signals.is_empty())
}

/// The names of the signals a batch's parks wait on, locked in the order of their
/// hashes: the first statement of the commit's transaction.
pub(crate) async fn lock_names(
    conn: &mut PgConnection,
    batch: &[(Lease, Transition)],
) -> Result<(), Error> {
    let names: Vec<&str> = batch
        .iter()
        .filter_map(|(_, t)| match &t.next {
            Next::Park(park) => Some(park.wake.signals.iter().map(|w| w.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    lock(conn, &names).await
}

async fn lock(conn: &mut PgConnection, names: &[&str]) -> Result<(), Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock($2, h)
         FROM (SELECT DISTINCT hashtext(n) AS h FROM unnest($1::text[]) AS n ORDER BY h) AS x",
    )
    .bind(names)
    .bind(LOCK_CLASS)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Registers the signal waits of the parks the commit kept, one statement each
/// (each sees the waits the ones before it registered): see
/// [`SignalWait`](flow_core::store::SignalWait) for what each does.
pub(crate) async fn register(
    conn: &mut PgConnection,
    lease: &Lease,
    t: &Transition,
    now: Now,
) -> Result<(), Error> {
    let Next::Park(park) = &t.next else {
        return Ok(());
    };
    for wait in &park.wake.signals {
        let holder = sqlx::query(
            "SELECT w.run_id, w.key FROM flow.waits w
             WHERE w.name = $4 AND w.field = 'signal' AND w.value = $3
               AND w.expires_at > COALESCE($5::timestamptz, now())
               AND (w.run_id, w.key) <> ($1::uuid, $2::text)
             ORDER BY w.since
             LIMIT 1",
        )
        .bind(lease.run_id.0)
        .bind(&wait.key)
        .bind(&wait.name)
        .bind(SIGNAL_WAIT)
        .bind(now.at())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let held = match holder {
            Some(row) => {
                let run: Uuid = row.try_get("run_id").map_err(db_error)?;
                let key: String = row.try_get("key").map_err(db_error)?;
                let holder = if run == lease.run_id.0 {
                    SignalHolder::Wait(key)
                } else {
                    SignalHolder::Run(RunId(run))
                };
                Some(signal_held_error(wait, &holder))
            }
            None => None,
        };
        sqlx::query(PARK)
            .bind(lease.run_id.0)
            .bind(lease.token)
            .bind(&wait.key)
            .bind(wait.position as i32)
            .bind(&wait.name)
            .bind(wait.expires_at)
            .bind(now.at())
            .bind(SIGNAL_WAIT)
            .bind(held)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// One signal wait of a kept park: the error `$9` when another wait holds the
/// name, else the oldest buffered signal, else the wait's row. A run the
/// statement records a step for is made due at once.
const PARK: &str = "WITH clock AS (
         SELECT COALESCE($7::timestamptz, now()) AS now
     ), taken AS (
         DELETE FROM flow.signal_buffer b
         WHERE b.id = (SELECT x.id FROM flow.signal_buffer x
                       WHERE x.name = $5 AND $9::jsonb IS NULL
                       ORDER BY x.id
                       LIMIT 1)
         RETURNING b.id, b.data, b.sent_at
     ), recorded AS (
         INSERT INTO flow.steps
             (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
         SELECT $1, $3, $4, 'signal',
                CASE WHEN t.id IS NOT NULL
                     THEN jsonb_build_object('signal', $5::text, 'id', t.id, 'data', t.data,
                                             'ts', t.sent_at) END,
                $9::jsonb, 1, clock.now, clock.now
         FROM clock LEFT JOIN taken t ON true
         WHERE $9::jsonb IS NOT NULL OR t.id IS NOT NULL
         ON CONFLICT (run_id, key) DO NOTHING
         RETURNING 1
     ), woken AS (
         UPDATE flow.runs r
         SET status = 'queued', not_before = clock.now, wait_since = clock.now,
             step_count = r.step_count + 1
         FROM clock
         WHERE r.id = $1 AND r.lease_token = $2 AND r.status IN ('waiting', 'queued')
           AND EXISTS (SELECT 1 FROM recorded)
         RETURNING 1
     ), registered AS (
         INSERT INTO flow.waits AS o
             (run_id, key, token, position, name, field, value, since, expires_at)
         SELECT $1, $3, $2, $4, $8, 'signal', $5, clock.now, $6 FROM clock
         WHERE $9::jsonb IS NULL AND NOT EXISTS (SELECT 1 FROM taken)
         ON CONFLICT (run_id, key) DO UPDATE SET token = EXCLUDED.token
         RETURNING 1
     ), closed AS (
         DELETE FROM flow.waits x
         WHERE x.run_id = $1 AND x.key = $3 AND EXISTS (SELECT 1 FROM recorded)
         RETURNING 1
     ), notified AS (
         SELECT pg_notify('flow_wakeup', '') WHERE EXISTS (SELECT 1 FROM woken)
     )
     SELECT (SELECT count(*) FROM notified) + 0 * (SELECT count(*) FROM registered)
            + 0 * (SELECT count(*) FROM closed)";

/// Sends a signal in the caller's transaction: the name locked, then the waiting
/// run's row, then the wait resolved (or the signal buffered, if asked).
pub(crate) async fn send(
    conn: &mut PgConnection,
    signal: &NewSignal,
    now: Now,
) -> Result<Option<SignalReceipt>, Error> {
    lock(conn, &[signal.name.as_str()]).await?;
    let waiter = sqlx::query(
        "SELECT w.run_id, w.key FROM flow.waits w
         JOIN flow.runs r ON r.id = w.run_id
         WHERE w.name = $2 AND w.field = 'signal' AND w.value = $1
           AND w.expires_at > COALESCE($3::timestamptz, now())
         ORDER BY w.since
         LIMIT 1
         FOR UPDATE OF r",
    )
    .bind(&signal.name)
    .bind(SIGNAL_WAIT)
    .bind(now.at())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let (run_id, key) = match &waiter {
        Some(row) => (
            Some(row.try_get::<Uuid, _>("run_id").map_err(db_error)?),
            Some(row.try_get::<String, _>("key").map_err(db_error)?),
        ),
        None => (None, None),
    };
    let row = sqlx::query(SEND)
        .bind(&signal.name)
        .bind(&signal.data)
        .bind(Uuid::now_v7())
        .bind(now.at())
        .bind(run_id)
        .bind(key)
        .bind(SIGNAL_WAIT)
        .bind(signal.buffer)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let delivered: Option<Uuid> = row.try_get("delivered").map_err(db_error)?;
    let buffered: bool = row.try_get("buffered").map_err(db_error)?;
    Ok(match delivered {
        Some(run) => Some(SignalReceipt::Delivered(RunId(run))),
        None if buffered => Some(SignalReceipt::Buffered),
        None => None,
    })
}

/// Resolves the wait `$5`/`$6` (if it is still open once its run's row is
/// locked): the signal recorded as its output, the run woken, or marked if it is
/// executing (its next park then wakes it, as an invoked run's end does);
/// otherwise the signal is buffered when `$8` asks.
const SEND: &str = "WITH clock AS (
         SELECT COALESCE($4::timestamptz, now()) AS now
     ), waiter AS (
         DELETE FROM flow.waits w USING clock
         WHERE w.run_id = $5 AND w.key = $6 AND w.name = $7 AND w.field = 'signal'
           AND w.value = $1 AND w.expires_at > clock.now
         RETURNING w.run_id, w.key, w.position
     ), recorded AS (
         INSERT INTO flow.steps
             (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
         SELECT w.run_id, w.key, w.position, 'signal',
                jsonb_build_object('signal', $1::text, 'id', $3::uuid, 'data', $2::jsonb,
                                   'ts', clock.now),
                NULL, 1, clock.now, clock.now
         FROM waiter w, clock
         ON CONFLICT (run_id, key) DO NOTHING
         RETURNING run_id
     ), woken AS (
         UPDATE flow.runs p
         SET status = CASE WHEN p.status IN ('waiting', 'sleeping', 'queued')
                           THEN 'queued' ELSE p.status END,
             not_before = CASE WHEN p.status IN ('waiting', 'sleeping', 'queued')
                               THEN LEAST(p.not_before, clock.now) ELSE p.not_before END,
             wait_since = CASE WHEN p.status IN ('waiting', 'sleeping')
                               THEN clock.now ELSE p.wait_since END,
             woken_under = CASE WHEN p.status = 'running'
                                THEN p.lease_token ELSE p.woken_under END,
             step_count = p.step_count + 1
         FROM clock
         WHERE p.id IN (SELECT run_id FROM recorded)
         RETURNING p.id
     ), buffered AS (
         INSERT INTO flow.signal_buffer (id, name, data, sent_at)
         SELECT $3, $1, $2, clock.now FROM clock
         WHERE $8 AND NOT EXISTS (SELECT 1 FROM recorded)
         RETURNING id
     ), notified AS (
         SELECT pg_notify('flow_wakeup', '') WHERE EXISTS (SELECT 1 FROM woken)
     )
     SELECT (SELECT id FROM woken) AS delivered,
            EXISTS (SELECT 1 FROM buffered) AS buffered,
            (SELECT count(*) FROM notified) AS notified";
