-- SPDX-License-Identifier: Apache-2.0
-- wrk script for bench/run's bcrypt-flood scenario: every request is GET /v2/ with Basic
-- credentials never sent before (a random user or a random password of $BENCH_USER), so that
-- none is answered from a remembered verdict. Prints one machine-readable line at the end (the
-- answers' statuses are counted from the mirror's access log).
local user = os.getenv("BENCH_USER") or "alice"
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local counter = 0

local function b64(s)
    return ((s:gsub(".", function(x)
        local r, b = "", x:byte()
        for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
        return r
    end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
        if #x < 6 then return "" end
        local c = 0
        for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
        return b64chars:sub(c + 1, c + 1)
    end) .. ({"", "==", "="})[#s % 3 + 1])
end

function setup(thread)
    thread:set("seed", math.random(1, 1000000000))
end

function init(args)
    math.randomseed(seed)
end

function request()
    counter = counter + 1
    local name = counter % 2 == 0 and user or string.format("u%08x", math.random(0, 0x7fffffff))
    local cred = string.format("%s:%08x%08x", name, math.random(0, 0x7fffffff), counter)
    return wrk.format("GET", "/v2/", {["Authorization"] = "Basic " .. b64(cred)})
end

function done(summary, latency, requests)
    io.write(string.format('FLOOD {"requests": %d, "duration_us": %d}\n', summary.requests,
                           summary.duration))
end
