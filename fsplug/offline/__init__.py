"""Offline data: Parquet sources, latest-row scans for materialization, point-in-time joins."""
