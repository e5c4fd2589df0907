-- SPDX-License-Identifier: Apache-2.0
-- wrk script for bench/lb.sh: cycles over the request paths in $BENCH_PATHS (space-separated),
-- each connection starting at its own place, and prints bench/wrk.lua's line of figures.
dofile(os.getenv("BENCH_WRK_LUA"))

local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS") or "/", "%S+") do
    paths[#paths + 1] = p
end
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("offset", counter * 7)
end

local i = 0
function request()
    i = i + 1
    return wrk.format("GET", paths[(i + (offset or 0)) % #paths + 1])
end
