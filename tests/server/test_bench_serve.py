"""The serve benchmark's wrk output parsing (no timing: figures come only from running the benchmark)."""

from __future__ import annotations

from benchmarks.serve import _parse_wrk

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40111
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.10ms    3.20ms  45.00ms   80.00%
    Req/Sec     1.00k   100.00     1.20k    70.00%
  Latency Distribution
     50%    7.95ms
     75%    9.00ms
     90%   11.00ms
     99%   19.41ms
  9990 requests in 10.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    999.00
Transfer/sec:      3.00MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors():
    got = _parse_wrk(WRK_OUTPUT)
    assert got == {
        "requests_per_s": 999.0,
        "requests": 9990,
        "p50_us": 7950.0,
        "p99_us": 19410.0,
        "non_2xx": 4,
        "socket_errors": 3,
    }


def test_parse_wrk_microseconds_and_no_errors():
    text = (
        WRK_OUTPUT.replace("7.95ms", "363.00us")
        .replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "")
        .replace("  Non-2xx or 3xx responses: 4\n", "")
    )
    got = _parse_wrk(text)
    assert got["p50_us"] == 363.0 and got["socket_errors"] == 0 and got["non_2xx"] == 0


def test_runs_report_each_figures_median_and_every_error():
    from benchmarks.serve import _median_of_runs

    runs = [
        {"requests_per_s": 900.0, "requests": 9000, "p50_us": 300.0, "p99_us": 900.0, "non_2xx": 0,
         "socket_errors": 0},
        {"requests_per_s": 1000.0, "requests": 10000, "p50_us": 250.0, "p99_us": 2000.0, "non_2xx": 1,
         "socket_errors": 0},
        {"requests_per_s": 950.0, "requests": 9500, "p50_us": 280.0, "p99_us": 1000.0, "non_2xx": 0,
         "socket_errors": 2},
    ]
    got = _median_of_runs(runs)
    assert (got["requests_per_s"], got["p50_us"], got["p99_us"]) == (950.0, 280.0, 1000.0)
    assert (got["requests"], got["non_2xx"], got["socket_errors"]) == (28500, 1, 2)
    assert got["runs"] == runs
