-- SPDX-License-Identifier: Apache-2.0
-- wrk script for bench/scale/run.py: GETs of random blobs from the file named by $SCALE_PATHS
-- (one request path a line), and one machine-readable line of figures at the end (latencies
-- in microseconds).
local paths = {}
for line in io.lines(os.getenv("SCALE_PATHS")) do
    paths[#paths + 1] = line
end

function init(args)
    math.randomseed(os.time())
end

function request()
    return wrk.format("GET", paths[math.random(#paths)])
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {"requests": %d, "duration_us": %d, "status": %d, "timeout": %d, '
        .. '"connect": %d, "read": %d, "p50_us": %d, "p99_us": %d}\n',
        summary.requests, summary.duration, e.status, e.timeout, e.connect, e.read,
        latency:percentile(50), latency:percentile(99)))
end
