"""Generate the ride-hailing data set of `feature_repo/`: driver features and labelled trip offers.

    python examples/generate_data.py --drivers 10000 --days 28 --out feature_repo/data --seed 7

Writes three Parquet files (columns exactly as in feature_repo/features/driver.yaml):

- ``driver_stats.parquet``: one snapshot per driver per day at 00:00 UTC, rolling 7/30-day stats
  of the days before it (view `driver_stats`, ttl 2d). About 2% of snapshots are missing
  (pipeline gaps) and drivers who join during the window have none before their first day.
- ``driver_activity.parquet``: one snapshot per driver per shift hour, a few minutes after the end
  of each hour on shift, only on days the driver works (view `driver_activity`, ttl 2h: an offer in
  the first hour of a shift finds yesterday's snapshot too old). ``acceptance_rate_1h`` is null
  when the driver got no offers in the hour.
- ``offers.parquet``: a sample of trip offers made to drivers on shift: ``driver_id``,
  ``event_timestamp``, request features ``pickup_distance_km``, ``surge_multiplier``,
  ``hour_of_day`` (UTC is local time here), the label ``declined`` (0/1) and
  ``true_decline_prob``, the probability the label was drawn with.

Both feature files carry late corrections: ~1% of daily and ~0.5% of hourly rows appear twice with
the same ``event_timestamp``; the later ``created`` row holds the corrected values, which is what a
point-in-time join (and materialization) returns.

Ground truth. Each offer's label is drawn as ``declined ~ Bernoulli(sigmoid(z))`` where the inputs
are the *as-of* feature values (what a point-in-time join with the repo's ttls returns for the
offer's driver and time) and the request features::

    z = -1.1
        + 3.0  * (0.75 - a7)              a7  = acceptance_rate_7d   (null -> 0.75)
        + 1.5  * (0.75 - a30)             a30 = acceptance_rate_30d  (null -> 0.75)
        + 1.2  * (0.75 - a1h)             a1h = acceptance_rate_1h   (null -> 0.75)
        + 0.25 * min(declines_1h, 6)                                  (null -> 0)
        + 0.45 * (pickup_distance_km - 2.5)
        - 0.9  * (surge_multiplier - 1)
        + 0.18 * max(hours_on_shift - 6, 0)                           (null -> 0)
        + 0.06 * min(consecutive_trips, 12)                           (null -> 0)
        + 5.0  * cancel_rate_30d                                      (null -> 0)
        - 0.6  * (avg_rating_30d - 4.7)                               (null -> 4.7)
        - 0.12 * (ln(1 + tenure_days) - 5)                            (null -> 0)
        + 0.5  * [hour_of_day >= 21 or hour_of_day < 6]               (trip_context:is_night)
        + 0.4  * [no driver_activity value within its ttl]
        + 0.35 * is_peak_hour                                         (trip_context:is_peak_hour)
        - 0.3  * (min(trips_per_hour, 4) - 1.5)                       (trip_context:trips_per_hour)

    is_peak_hour   = 7 <= hour_of_day < 10 or 16 <= hour_of_day < 19
    trips_per_hour = trips_today / max(hours_on_shift, 0.5)          (nulls -> 0, the repo's defaults)

The last two are derived features of the repo (feature_repo/features/driver.yaml, `trip_context`),
computed here from the same as-of values: rush hours bring more declines, and a driver who keeps
completing trips tends to accept the next one.

`decline_probability` implements it; the AUC of ``true_decline_prob`` against ``declined`` is the
best any model can reach on this data. Everything is drawn from ``numpy.random.default_rng`` seeded
by (seed, chunk), so the same arguments give byte-identical files; the default end is a fixed date
(pass ``end`` / ``--end now`` for data that is fresh for online reads).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_END = datetime(2026, 3, 1, tzinfo=UTC)
DRIVER_ID_BASE = 1000  # driver ids are DRIVER_ID_BASE + 1 .. DRIVER_ID_BASE + n_drivers
STATS_TTL_S = 2 * 86_400  # mirrors feature_repo/features/driver.yaml (driver_stats ttl: 2d)
ACTIVITY_TTL_S = 2 * 3_600  # mirrors driver_activity ttl: 2h
BURN_IN_DAYS = 30  # history before the window, so 30-day stats are full from day one
_CELLS_PER_CHUNK = 1_000_000  # driver-days simulated at once: bounds memory for any n_drivers
_ROW_GROUP = 1 << 20

TS = pa.timestamp("us", tz="UTC")
STATS_SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", TS),
        ("created", TS),
        ("acceptance_rate_7d", pa.float64()),
        ("acceptance_rate_30d", pa.float64()),
        ("trips_7d", pa.int64()),
        ("trips_30d", pa.int64()),
        ("avg_rating_30d", pa.float64()),
        ("cancel_rate_30d", pa.float64()),
        ("tenure_days", pa.int64()),
    ]
)
ACTIVITY_SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", TS),
        ("created", TS),
        ("trips_today", pa.int64()),
        ("hours_on_shift", pa.float64()),
        ("consecutive_trips", pa.int64()),
        ("acceptance_rate_1h", pa.float64()),
        ("declines_1h", pa.int64()),
    ]
)
OFFERS_SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", TS),
        ("pickup_distance_km", pa.float64()),
        ("surge_multiplier", pa.float64()),
        ("hour_of_day", pa.int64()),
        ("declined", pa.int64()),
        ("true_decline_prob", pa.float64()),
    ]
)
STATS_FEATURES = [f.name for f in STATS_SCHEMA][3:]
ACTIVITY_FEATURES = [f.name for f in ACTIVITY_SCHEMA][3:]
REQUEST_FEATURES = ["pickup_distance_km", "surge_multiplier", "hour_of_day"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _fill(x: np.ndarray, value: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), value, x)


def decline_probability(f: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ground-truth P(declined) of the module docstring; `f` maps feature names to arrays (NaN = null)."""
    a7 = _fill(f["acceptance_rate_7d"], 0.75)
    a30 = _fill(f["acceptance_rate_30d"], 0.75)
    a1h = _fill(f["acceptance_rate_1h"], 0.75)
    hours = np.asarray(f["hours_on_shift"], dtype=np.float64)
    stale = np.isnan(hours)
    hour = np.asarray(f["hour_of_day"], dtype=np.float64)
    trips_per_hour = _fill(f["trips_today"], 0.0) / np.maximum(_fill(hours, 0.0), 0.5)
    z = (
        -1.1
        + 3.0 * (0.75 - a7)
        + 1.5 * (0.75 - a30)
        + 1.2 * (0.75 - a1h)
        + 0.25 * np.minimum(_fill(f["declines_1h"], 0.0), 6.0)
        + 0.45 * (np.asarray(f["pickup_distance_km"], dtype=np.float64) - 2.5)
        - 0.9 * (np.asarray(f["surge_multiplier"], dtype=np.float64) - 1.0)
        + 0.18 * np.maximum(_fill(hours, 0.0) - 6.0, 0.0)
        + 0.06 * np.minimum(_fill(f["consecutive_trips"], 0.0), 12.0)
        + 5.0 * _fill(f["cancel_rate_30d"], 0.0)
        - 0.6 * (_fill(f["avg_rating_30d"], 4.7) - 4.7)
        - 0.12 * (np.log1p(_fill(f["tenure_days"], 0.0)) - 5.0)
        + 0.5 * ((hour >= 21) | (hour < 6))
        + 0.4 * stale
        + 0.35 * (((hour >= 7) & (hour < 10)) | ((hour >= 16) & (hour < 19)))
        - 0.3 * (np.minimum(trips_per_hour, 4.0) - 1.5)
    )
    return _sigmoid(z)


# ---------------------------------------------------------------------------------------------


def generate(
    out_dir: Path,
    n_drivers: int = 10_000,
    days: int = 28,
    seed: int = 7,
    end: datetime | None = None,
    offers_per_driver_day: float = 6.0,
) -> dict:
    """Write driver_stats/driver_activity/offers Parquet files into `out_dir`; return a summary.

    Data covers `days` UTC calendar days up to `end` (default `DEFAULT_END`; naive = UTC): the last is
    the day `end` falls in (the day before, when `end` is midnight), and rows at or after `end` are
    dropped, so with an `end` in the small hours the last day holds no offers yet (shifts start at
    05:00). Drivers are simulated in chunks written as row groups, so memory stays
    bounded for millions of drivers (use few days and `offers_per_driver_day=0` for scale runs).
    The summary has the file paths, row counts, the time range and the label rate.
    """
    if n_drivers < 1 or days < 1:
        raise ValueError("n_drivers and days must be >= 1")
    if offers_per_driver_day < 0:
        raise ValueError("offers_per_driver_day must be >= 0")
    end = (
        DEFAULT_END
        if end is None
        else (end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC))
    )
    last_day = datetime(end.year, end.month, end.day, tzinfo=UTC)
    if last_day == end:
        last_day -= timedelta(days=1)
    start = last_day - timedelta(days=days - 1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "driver_stats": out_dir / "driver_stats.parquet",
        "driver_activity": out_dir / "driver_activity.parquet",
        "offers": out_dir / "offers.parquet",
    }
    schemas = {"driver_stats": STATS_SCHEMA, "driver_activity": ACTIVITY_SCHEMA, "offers": OFFERS_SCHEMA}
    tmp = {k: p.with_name(p.name + ".tmp") for k, p in paths.items()}
    writers = {k: pq.ParquetWriter(tmp[k], schemas[k], compression="snappy") for k in paths}
    rows = dict.fromkeys(paths, 0)
    declined = 0
    per_chunk = max(1, _CELLS_PER_CHUNK // (BURN_IN_DAYS + days))
    try:
        for chunk, lo in enumerate(range(0, n_drivers, per_chunk)):
            n = min(per_chunk, n_drivers - lo)
            rng = np.random.default_rng([seed, chunk])
            tables = _simulate_chunk(rng, lo, n, days, start, end, offers_per_driver_day)
            for k, t in tables.items():
                writers[k].write_table(t, row_group_size=_ROW_GROUP)
                rows[k] += t.num_rows
            declined += int(np.asarray(tables["offers"]["declined"]).sum())
    except BaseException:
        for w in writers.values():
            w.close()
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise
    for w in writers.values():
        w.close()
    for k, path in paths.items():
        tmp[k].replace(path)
    return {
        "paths": {k: str(p) for k, p in paths.items()},
        "rows": rows,
        "start": start,
        "end": end,
        "drivers": n_drivers,
        "days": days,
        "seed": seed,
        "decline_rate": declined / rows["offers"] if rows["offers"] else math.nan,
    }


def _day_us(start: datetime) -> int:
    return int((start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000


def _simulate_chunk(
    rng: np.random.Generator,
    lo: int,
    n: int,
    days: int,
    start: datetime,
    end: datetime,
    offers_per_day: float,
) -> dict[str, pa.Table]:
    """Simulate drivers lo..lo+n: all three tables for them, each sorted by (event_timestamp, driver_id)."""
    D = BURN_IN_DAYS + days
    driver_id = DRIVER_ID_BASE + 1 + lo + np.arange(n, dtype=np.int64)
    start_s = _day_us(start) // 1_000_000
    end_s = _day_us(end) // 1_000_000 + (end.microsecond > 0)

    # --- per-driver traits
    acc_p = _sigmoid(rng.normal(1.3, 0.7, n))
    cancel_p = rng.beta(2.0, 45.0, n)
    rating_mu = np.clip(rng.normal(4.78, 0.12, n), 3.8, 5.0)
    tenure0 = np.floor(rng.exponential(500.0, n)).astype(np.int64)
    p_work = rng.beta(6.0, 2.5, n)
    trips_per_hour = rng.gamma(6.0, 0.25, n)
    offers_per_hour = trips_per_hour / acc_p
    base_start = rng.choice(np.array([6, 7, 8, 10, 11, 12, 15, 16, 17]), n)
    base_len = rng.integers(4, 10, n, endpoint=True)
    newcomer = rng.random(n) < 0.03
    first_day = np.where(newcomer, rng.integers(0, days, n), -D)  # window day index of first day

    # --- per driver-day, over burn-in + window (column BURN_IN_DAYS + t is window day t)
    t_idx = np.arange(D) - BURN_IN_DAYS
    started = t_idx[None, :] >= first_day[:, None]
    works = (rng.random((n, D)) < p_work[:, None]) & started
    s_start = np.clip(base_start[:, None] + rng.integers(-1, 2, (n, D)), 5, 20)
    s_len = np.clip(base_len[:, None] + rng.integers(-1, 2, (n, D)), 3, 10)
    s_len = np.minimum(s_len, 24 - s_start)
    acc_day = _sigmoid(_logit(acc_p)[:, None] + rng.normal(0.0, 0.35, (n, D)))
    offers_d = np.zeros((n, D), dtype=np.int64)
    accepted_d = np.zeros((n, D), dtype=np.int64)
    cancels_d = np.zeros((n, D), dtype=np.int64)
    # burn-in days: daily totals only
    b = slice(0, BURN_IN_DAYS)
    lam = np.where(works[:, b], s_len[:, b] * offers_per_hour[:, None], 0.0)
    offers_d[:, b] = rng.poisson(lam)
    accepted_d[:, b] = rng.binomial(offers_d[:, b], acc_day[:, b])
    cancels_d[:, b] = rng.binomial(accepted_d[:, b], cancel_p[:, None])

    # --- window days: hour by hour on shift (ragged: one row per driver, working day, shift hour)
    pi, pd = np.nonzero(works[:, BURN_IN_DAYS:])
    col = pd + BURN_IN_DAYS
    L = s_len[pi, col]
    pair = np.repeat(np.arange(len(pi)), L)
    first_row = np.concatenate([[0], np.cumsum(L)[:-1]]).astype(np.int64)
    j = np.arange(len(pair)) - np.repeat(first_row, L)
    drv = pi[pair]
    offers_h = rng.poisson(offers_per_hour[drv])
    acc_h = _sigmoid(_logit(acc_day[drv, col[pair]]) - 0.1 * np.maximum(j - 5, 0))
    accepted_h = rng.binomial(offers_h, acc_h)
    cancels_h = rng.binomial(accepted_h, cancel_p[drv])
    trips_h = accepted_h - cancels_h
    n_pairs = len(pi)
    for arr_d, arr_h in ((offers_d, offers_h), (accepted_d, accepted_h), (cancels_d, cancels_h)):
        arr_d[pi, col] = np.bincount(pair, weights=arr_h, minlength=n_pairs).astype(np.int64)

    shift_start_s = start_s + pd.astype(np.int64) * 86_400 + s_start[pi, col].astype(np.int64) * 3_600
    jitter = rng.integers(0, 300, len(pair))  # snapshot written a few minutes after the hour
    act_ts = shift_start_s[pair] + (j + 1) * 3_600 + jitter
    cum = np.cumsum(trips_h)
    trips_today = cum - (cum - trips_h)[first_row][pair]
    brk = (rng.random(len(pair)) < 0.2) | (j == 0)  # a 20-minute break resets the streak
    seg = np.cumsum(brk) - 1
    seg_first = np.flatnonzero(brk)
    consecutive = cum - (cum - trips_h)[seg_first][seg]
    hours_on_shift = (act_ts - shift_start_s[pair]) / 3_600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_rate_1h = np.where(offers_h > 0, accepted_h / offers_h, np.nan)
    declines_1h = offers_h - accepted_h
    act_created = act_ts + rng.integers(5, 120, len(pair))

    # --- daily snapshots at 00:00 of each window day, over the days before it
    def window_sum(a: np.ndarray, width: int) -> np.ndarray:
        cs = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(a, axis=1)], axis=1)
        hi = BURN_IN_DAYS + np.arange(days)
        return cs[:, hi] - cs[:, hi - width]

    off7, acc7, off30, acc30 = (
        window_sum(offers_d, 7),
        window_sum(accepted_d, 7),
        window_sum(offers_d, 30),
        window_sum(accepted_d, 30),
    )
    can30 = window_sum(cancels_d, 30)
    trips7 = acc7 - window_sum(cancels_d, 7)
    trips30 = acc30 - can30
    day = np.arange(days)
    has_row = (day[None, :] >= first_day[:, None]) & (rng.random((n, days)) >= 0.02)
    si, sd = np.nonzero(has_row)
    with np.errstate(invalid="ignore", divide="ignore"):
        a7 = np.where(off7 > 0, acc7 / np.maximum(off7, 1), np.nan)[si, sd]
        a30 = np.where(off30 > 0, acc30 / np.maximum(off30, 1), np.nan)[si, sd]
        c30 = np.where(acc30 > 0, can30 / np.maximum(acc30, 1), np.nan)[si, sd]
    t30 = trips30[si, sd]
    rating = np.where(
        t30 > 0,
        np.clip(rating_mu[si] + rng.normal(0.0, 0.3, len(si)) / np.sqrt(np.maximum(t30, 1)), 1.0, 5.0),
        np.nan,
    )
    tenure = np.where(newcomer[si], sd - first_day[si], tenure0[si] + sd)
    stats_ts = start_s + sd.astype(np.int64) * 86_400
    stats_created = stats_ts + rng.integers(20 * 60, 3 * 3_600, len(si))
    stats = {
        "acceptance_rate_7d": a7,
        "acceptance_rate_30d": a30,
        "trips_7d": trips7[si, sd],
        "trips_30d": t30,
        "avg_rating_30d": rating,
        "cancel_rate_30d": c30,
        "tenure_days": tenure,
    }
    activity = {
        "trips_today": trips_today,
        "hours_on_shift": hours_on_shift,
        "consecutive_trips": consecutive,
        "acceptance_rate_1h": acc_rate_1h,
        "declines_1h": declines_1h,
    }

    # --- offers during shifts, labelled from the as-of features
    k = rng.poisson(offers_per_day, n_pairs) if offers_per_day > 0 else np.zeros(n_pairs, np.int64)
    op = np.repeat(np.arange(n_pairs), k)
    o_drv = pi[op]
    o_ts = shift_start_s[op] + np.floor(rng.random(len(op)) * L[op] * 3_600).astype(np.int64)
    keep = o_ts < end_s
    op, o_drv, o_ts = op[keep], o_drv[keep], o_ts[keep]
    hour = (o_ts % 86_400) // 3_600
    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 17) & (hour <= 19))
    surge = 1.0 + np.round(np.clip(rng.normal(np.where(rush, 0.3, 0.0), 0.35), 0.0, 2.0), 1)
    distance = np.round(rng.gamma(2.0, 1.1, len(op)) + 0.2, 2)
    features: dict[str, np.ndarray] = {
        "pickup_distance_km": distance,
        "surge_multiplier": surge,
        "hour_of_day": hour,
    }
    features.update(_as_of(si, stats_ts, stats, o_drv, o_ts, STATS_TTL_S))
    features.update(_as_of(drv, act_ts, activity, o_drv, o_ts, ACTIVITY_TTL_S))
    prob = decline_probability(features)
    label = (rng.random(len(op)) < prob).astype(np.int64)

    # --- late corrections: an earlier-created row with the values before the correction
    stats_tab = _table(STATS_SCHEMA, driver_id[si], stats_ts, stats_created, stats)
    dup = np.flatnonzero(rng.random(len(si)) < 0.01)
    if len(dup):
        early = {c: v[dup].copy() for c, v in stats.items()}
        early["trips_7d"] = np.maximum(early["trips_7d"] - rng.integers(1, 6, len(dup)), 0)
        early["acceptance_rate_7d"] = np.clip(
            early["acceptance_rate_7d"] + rng.normal(0, 0.08, len(dup)), 0, 1
        )
        early_created = stats_created[dup] - rng.integers(2 * 3_600, 20 * 3_600, len(dup))
        stats_tab = pa.concat_tables(
            [stats_tab, _table(STATS_SCHEMA, driver_id[si[dup]], stats_ts[dup], early_created, early)]
        )
    act_tab = _table(ACTIVITY_SCHEMA, driver_id[drv], act_ts, act_created, activity)
    dup = np.flatnonzero(rng.random(len(drv)) < 0.005)
    if len(dup):
        early = {c: v[dup].copy() for c, v in activity.items()}
        early["declines_1h"] = early["declines_1h"] + 1
        early["trips_today"] = np.maximum(early["trips_today"] - 1, 0)
        early_created = act_created[dup] - rng.integers(10 * 60, 90 * 60, len(dup))
        act_tab = pa.concat_tables(
            [act_tab, _table(ACTIVITY_SCHEMA, driver_id[drv[dup]], act_ts[dup], early_created, early)]
        )
    offers_tab = pa.Table.from_arrays(
        [
            pa.array(driver_id[o_drv]),
            _ts(o_ts),
            pa.array(distance),
            pa.array(surge),
            pa.array(hour.astype(np.int64)),
            pa.array(label),
            pa.array(prob),
        ],
        schema=OFFERS_SCHEMA,
    )
    end_us = int((end - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    out = {}
    for name, full, sort in (
        ("driver_stats", stats_tab, ["event_timestamp", "driver_id", "created"]),
        ("driver_activity", act_tab, ["event_timestamp", "driver_id", "created"]),
        ("offers", offers_tab, ["event_timestamp", "driver_id"]),
    ):
        tab = full.filter(np.asarray(full["event_timestamp"].cast(pa.int64())) < end_us)
        out[name] = tab.sort_by([(c, "ascending") for c in sort])
    return out


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64) * 1_000_000, TS)


def _table(schema: pa.Schema, ids, ts_s, created_s, values: Mapping[str, np.ndarray]) -> pa.Table:
    arrays = [pa.array(np.asarray(ids, dtype=np.int64)), _ts(ts_s), _ts(created_s)]
    for f in list(schema)[3:]:
        v = np.asarray(values[f.name])
        if pa.types.is_floating(f.type):
            arrays.append(pa.array(v.astype(np.float64), from_pandas=True))  # NaN -> null
        else:
            arrays.append(pa.array(v.astype(np.int64)))
    return pa.Table.from_arrays(arrays, schema=schema)


def _as_of(
    src_drv: np.ndarray,
    src_ts: np.ndarray,
    values: Mapping[str, np.ndarray],
    q_drv: np.ndarray,
    q_ts: np.ndarray,
    ttl_s: int,
) -> dict[str, np.ndarray]:
    """The generator's own as-of lookup (latest src row with ts <= q_ts, within ttl), NaN when none.

    Independent of fsplug.offline.pit on purpose: tests check that the two agree."""
    base = min(int(src_ts.min()) if len(src_ts) else 0, int(q_ts.min()) if len(q_ts) else 0)
    key = src_drv.astype(np.int64) * (1 << 32) + (src_ts - base)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    q = q_drv.astype(np.int64) * (1 << 32) + (q_ts - base)
    pos = np.searchsorted(key_sorted, q, side="right") - 1
    safe = np.maximum(pos, 0)
    hit = (pos >= 0) & (src_drv[order][safe] == q_drv) & (q_ts - src_ts[order][safe] <= ttl_s)
    rows = order[safe]
    return {c: np.where(hit, np.asarray(v, dtype=np.float64)[rows], np.nan) for c, v in values.items()}


# ---------------------------------------------------------------------------------------------


def _parse_end(text: str | None) -> datetime | None:
    if text is None:
        return None
    if text == "now":
        return datetime.now(UTC).replace(microsecond=0)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Generate the ride-hailing driver feature data and labelled offers."
    )
    ap.add_argument("--drivers", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--out", type=Path, default=Path("feature_repo/data"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--end", help=f"ISO time (naive = UTC) or 'now'; default {DEFAULT_END.isoformat()}")
    ap.add_argument("--offers-per-driver-day", type=float, default=6.0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(
        args.out,
        n_drivers=args.drivers,
        days=args.days,
        seed=args.seed,
        end=_parse_end(args.end),
        offers_per_driver_day=args.offers_per_driver_day,
    )
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    print(
        json.dumps(summary, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o), indent=2)
    )


if __name__ == "__main__":
    main()
