//! Versions of the function catalog (migration 14): a worker marks the versions of
//! the functions it serves as seen, and the catalog follows, per function, the
//! version first seen last among those seen within `VERSION_LIVENESS`.

use sqlx::PgConnection;

use flow_core::catalog::VERSION_LIVENESS;
use flow_core::store::FunctionInfo;
use flow_core::{Error, Now};

use crate::db_error;

/// Marks the versions of `functions` as seen now (a new one first seen now) and
/// points each function's catalog entry at its current version. When a worker
/// starts (`announcing`), a version no worker served within `VERSION_LIVENESS` is
/// first seen again now: a deploy that goes back to an earlier configuration is
/// the newest version, not a stale one. A heartbeat never does this, so a worker
/// that stalled past the liveness does not take the catalog back.
pub(crate) async fn keep(
    conn: &mut PgConnection,
    functions: &[FunctionInfo],
    now: Now,
    announcing: bool,
) -> Result<(), Error> {
    let ids: Vec<&str> = functions.iter().map(|f| f.id.as_str()).collect();
    let (hashes, rules): (Vec<String>, Vec<Option<String>>) =
        functions.iter().map(|f| f.send_rules.version()).unzip();
    sqlx::query(
        "WITH clock AS (
             SELECT COALESCE($4::timestamptz, now()) AS now
         ), seen AS (
             INSERT INTO flow.function_versions AS v
                 (function_id, hash, send_rules, first_seen, last_seen)
             SELECT u.id, u.hash, u.rules::jsonb, clock.now, clock.now
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, hash, rules), clock
             ON CONFLICT (function_id, hash) DO UPDATE
                 SET first_seen = CASE
                         WHEN $6 AND v.last_seen <= EXCLUDED.last_seen - $5 * interval '1 second'
                         THEN EXCLUDED.first_seen ELSE v.first_seen END,
                     last_seen = GREATEST(v.last_seen, EXCLUDED.last_seen)
             RETURNING function_id, hash, send_rules, first_seen
         ), candidates AS (
             -- The versions just seen (this statement's writes are not visible
             -- to its reads) and the others still served.
             SELECT function_id, hash, send_rules, first_seen FROM seen
             UNION ALL
             SELECT v.function_id, v.hash, v.send_rules, v.first_seen
             FROM flow.function_versions v, clock
             WHERE v.function_id = ANY($1)
               AND (v.function_id, v.hash) NOT IN (SELECT function_id, hash FROM seen)
               AND v.last_seen > clock.now - $5 * interval '1 second'
         ), current AS (
             SELECT DISTINCT ON (function_id) function_id, NULLIF(hash, '') AS hash, send_rules
             FROM candidates
             ORDER BY function_id, first_seen DESC, hash
         )
         UPDATE flow.functions f SET send_rules = c.send_rules, send_rules_hash = c.hash
         FROM current c
         WHERE f.id = c.function_id AND f.send_rules_hash IS DISTINCT FROM c.hash",
    )
    .bind(&ids)
    .bind(&hashes)
    .bind(&rules)
    .bind(now.at())
    .bind(VERSION_LIVENESS.as_secs_f64())
    .bind(announcing)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}
